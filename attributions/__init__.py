"""Attribution methods and helpers for any ``nn.Module`` (no Lightning here).

Every method is an object called as ``method(model, inputs, target=None)`` and returns a tensor
shaped like ``inputs``; see :mod:`attributions.base`. Build one by name with
:func:`build_attribution` (the names: :func:`attribution_names`); reduce a result to one value
per pixel with :func:`pixel_map`.

A method registers its name in its class statement; the modules are imported here in the order
the names are listed (the report's columns, ``--help``).
"""

from typing import Any

from attributions.base import DEFAULT_LISTS, AttributionMethod, GradientAttribution, register_method
from attributions.gradients import InputXGradient, Saliency
from attributions.integrated_gradients import BASELINES, QUADRATURES, IntegratedGradients
from attributions.smoothgrad import NOISE_TUNNELS, SmoothGrad
from attributions.grad_cam import GradCAM, conv_layer_names, default_gradcam_layer
from attributions.guided_backprop import GuidedBackprop, guided_relus
from attributions.lrp import COMPOSITES, LRP
from attributions.deeplift import DeepLiftRescale, rescale_rule
from attributions.occlusion import Occlusion
from attributions.grad_cam_plus_plus import GradCAMPlusPlus
from attributions.score_cam import CHANNEL_WEIGHTS, ScoreCAM
from attributions.controls import EdgeDetector, RandomAttribution
from attributions.maps import MAP_REDUCTIONS, MapReduction, pixel_map
from attributions.registry import (
    attribution_name,
    attribution_names,
    attribution_options,
    build_attribution,
    check_attribution_name,
)

__all__ = [
    "BASELINES",
    "CHANNEL_WEIGHTS",
    "COMPOSITES",
    "DEFAULT_LISTS",
    "MAP_REDUCTIONS",
    "NOISE_TUNNELS",
    "QUADRATURES",
    "LRP",
    "AttributionMethod",
    "DeepLiftRescale",
    "EdgeDetector",
    "GradCAM",
    "GradCAMPlusPlus",
    "GradientAttribution",
    "GuidedBackprop",
    "InputXGradient",
    "IntegratedGradients",
    "MapReduction",
    "Occlusion",
    "RandomAttribution",
    "Saliency",
    "ScoreCAM",
    "SmoothGrad",
    "attribution_name",
    "attribution_names",
    "attribution_options",
    "build_attribution",
    "check_attribution_name",
    "conv_layer_names",
    "default_gradcam_layer",
    "guided_relus",
    "pixel_map",
    "register_method",
    "rescale_rule",
]

_RETIRED = {
    "ATTRIBUTION_NAMES": "attribution_names() (read live from the registry)",
    "AttributionName": "str, checked with check_attribution_name()",
}


def __getattr__(name: str) -> Any:
    if name in _RETIRED:
        raise AttributeError(f"attributions.{name} is retired: use {_RETIRED[name]}")
    raise AttributeError(f"module 'attributions' has no attribute {name!r}")
