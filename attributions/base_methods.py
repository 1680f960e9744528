"""The attribution methods that stand on the model alone, by name: every method but the noise
tunnels (:mod:`attributions.smoothgrad`), which wrap one of these.

:class:`attributions.smoothgrad.SmoothGrad` builds its ``base`` from this table and
:mod:`attributions.registry` adds the noise tunnels to it, so the wrapper and the registry import
in one direction only.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from attributions.base import AttributionMethod
from attributions.controls import EdgeDetector, RandomAttribution
from attributions.grad_cam import GradCAM
from attributions.gradients import InputXGradient, Saliency
from attributions.guided_backprop import GuidedBackprop
from attributions.integrated_gradients import IntegratedGradients

BASE_METHODS: dict[str, type[AttributionMethod]] = {
    "saliency": Saliency,
    "input_x_gradient": InputXGradient,
    "integrated_gradients": IntegratedGradients,
    "grad_cam": GradCAM,
    "guided_backprop": GuidedBackprop,
    "edge": EdgeDetector,
    "random": RandomAttribution,
}


def method_options(cls: type[AttributionMethod], fixed: Mapping[str, Any]) -> tuple[str, ...]:
    """The constructor arguments of ``cls`` a caller may set (all but those ``fixed`` by a name)."""
    return tuple(p for p in inspect.signature(cls).parameters if p not in fixed)


def build_method(name: str, cls: type[AttributionMethod], fixed: Mapping[str, Any], kwargs: Mapping[str, Any]) -> AttributionMethod:
    """``cls(**fixed, **kwargs)``, or a ValueError naming the options method ``name`` accepts."""
    allowed = method_options(cls, fixed)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"method {name!r} options must be among {allowed}, got {unknown}")
    return cls(**fixed, **kwargs)
