"""Attribution methods by name, for recipes, callbacks and notebooks.

``build_attribution("integrated_gradients", steps=100)`` builds the object; the names are in
:data:`ATTRIBUTION_NAMES`. "smoothgrad", "smoothgrad_abs", "smoothgrad_sq", "vargrad" and
"vargrad_abs" wrap another method given by ``base`` (a name, "saliency" by default: the signed
gradient, as in the papers) with ``base_kwargs``; the ``_abs`` variants smooth |Φ|.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Literal

from attributions.base import AttributionMethod
from attributions.controls import EdgeDetector, RandomAttribution
from attributions.grad_cam import GradCAM
from attributions.gradients import InputXGradient, Saliency
from attributions.guided_backprop import GuidedBackprop
from attributions.integrated_gradients import IntegratedGradients
from attributions.smoothgrad import SmoothGrad

AttributionName = Literal[
    "saliency",
    "input_x_gradient",
    "integrated_gradients",
    "smoothgrad",
    "smoothgrad_abs",
    "smoothgrad_sq",
    "vargrad",
    "vargrad_abs",
    "grad_cam",
    "guided_backprop",
    "edge",
    "random",
]

_BUILDERS: dict[str, tuple[Callable[..., AttributionMethod], dict[str, Any]]] = {
    "saliency": (Saliency, {}),
    "input_x_gradient": (InputXGradient, {}),
    "integrated_gradients": (IntegratedGradients, {}),
    "smoothgrad": (SmoothGrad, {"kind": "smoothgrad"}),
    "smoothgrad_abs": (SmoothGrad, {"kind": "smoothgrad_abs"}),
    "smoothgrad_sq": (SmoothGrad, {"kind": "smoothgrad_sq"}),
    "vargrad": (SmoothGrad, {"kind": "vargrad"}),
    "vargrad_abs": (SmoothGrad, {"kind": "vargrad_abs"}),
    "grad_cam": (GradCAM, {}),
    "guided_backprop": (GuidedBackprop, {}),
    "edge": (EdgeDetector, {}),
    "random": (RandomAttribution, {}),
}

ATTRIBUTION_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def attribution_options(name: str) -> tuple[str, ...]:
    """The keyword arguments ``build_attribution(name, ...)`` accepts."""
    check_attribution_name(name)
    cls, fixed = _BUILDERS[name]
    params = inspect.signature(cls).parameters
    return tuple(p for p in params if p not in fixed)


def check_attribution_name(name: str) -> None:
    """Raise a ValueError naming the allowed values when ``name`` is no known method."""
    if name not in _BUILDERS:
        raise ValueError(f"method must be one of {ATTRIBUTION_NAMES}, got {name!r}")


def build_attribution(name: str, **kwargs: Any) -> AttributionMethod:
    """The attribution method called ``name``, configured by ``kwargs``.

    Raises:
        ValueError: for an unknown name or option (naming the allowed ones), or a bad value.
    """
    allowed = attribution_options(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"method {name!r} options must be among {allowed}, got {unknown}")
    cls, fixed = _BUILDERS[name]
    return cls(**fixed, **kwargs)
