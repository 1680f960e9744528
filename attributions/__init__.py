"""Attribution methods and helpers for any ``nn.Module`` (no Lightning here).

Every method is an object called as ``method(model, inputs, target=None)`` and returns a tensor
shaped like ``inputs``; see :mod:`attributions.base`. Build one by name with
:func:`build_attribution`; reduce a result to one value per pixel with :func:`pixel_map`.
"""

from attributions.base import AttributionMethod, GradientAttribution
from attributions.controls import EdgeDetector, RandomAttribution
from attributions.grad_cam import GradCAM, conv_layer_names, default_gradcam_layer
from attributions.gradients import InputXGradient, Saliency
from attributions.guided_backprop import GuidedBackprop, guided_relus
from attributions.integrated_gradients import BASELINES, QUADRATURES, IntegratedGradients
from attributions.maps import MAP_REDUCTIONS, MapReduction, pixel_map
from attributions.registry import (
    ATTRIBUTION_NAMES,
    AttributionName,
    attribution_options,
    build_attribution,
    check_attribution_name,
)
from attributions.smoothgrad import NOISE_TUNNELS, SmoothGrad

__all__ = [
    "ATTRIBUTION_NAMES",
    "BASELINES",
    "MAP_REDUCTIONS",
    "NOISE_TUNNELS",
    "QUADRATURES",
    "AttributionMethod",
    "AttributionName",
    "EdgeDetector",
    "GradCAM",
    "GradientAttribution",
    "GuidedBackprop",
    "InputXGradient",
    "IntegratedGradients",
    "MapReduction",
    "RandomAttribution",
    "Saliency",
    "SmoothGrad",
    "attribution_options",
    "build_attribution",
    "check_attribution_name",
    "conv_layer_names",
    "default_gradcam_layer",
    "guided_relus",
    "pixel_map",
]
