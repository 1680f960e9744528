"""Attribution methods by name, for recipes, callbacks and notebooks.

``build_attribution("integrated_gradients", steps=100)`` builds the object; the names are in
:data:`ATTRIBUTION_NAMES`. "smoothgrad", "smoothgrad_abs", "smoothgrad_sq", "vargrad" and
"vargrad_abs" wrap another method given by ``base`` (a name, "saliency" by default: the signed
gradient, as in the papers) with ``base_kwargs``; the ``_abs`` variants smooth |Φ|.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_args

from attributions.base import AttributionMethod
from attributions.base_methods import BASE_METHODS, build_method, method_options
from attributions.smoothgrad import NOISE_TUNNELS, SmoothGrad

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

# A noise tunnel's name is its ``kind``; every other name is one of the base methods.
_BUILDERS: dict[str, tuple[Callable[..., AttributionMethod], dict[str, Any]]] = {
    name: (SmoothGrad, {"kind": name}) if name in NOISE_TUNNELS else (BASE_METHODS[name], {})
    for name in get_args(AttributionName)
}

ATTRIBUTION_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def attribution_options(name: str) -> tuple[str, ...]:
    """The keyword arguments ``build_attribution(name, ...)`` accepts."""
    check_attribution_name(name)
    cls, fixed = _BUILDERS[name]
    return method_options(cls, fixed)


def check_attribution_name(name: str) -> None:
    """Raise a ValueError naming the allowed values when ``name`` is no known method."""
    if name not in _BUILDERS:
        raise ValueError(f"method must be one of {ATTRIBUTION_NAMES}, got {name!r}")


def build_attribution(name: str, **kwargs: Any) -> AttributionMethod:
    """The attribution method called ``name``, configured by ``kwargs``.

    Raises:
        ValueError: for an unknown name or option (naming the allowed ones), or a bad value.
    """
    check_attribution_name(name)
    cls, fixed = _BUILDERS[name]
    return build_method(name, cls, fixed, kwargs)
