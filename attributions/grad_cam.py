"""Grad-CAM (Selvaraju, Cogswell, Das, Vedantam, Parikh & Batra, "Grad-CAM: Visual Explanations
from Deep Networks via Gradient-based Localization", ICCV 2017).

For the activations A (B, K, h, w) of a convolutional layer and the target logit f_t:

    α_k = mean_{u,v} ∂f_t/∂A_k[u, v],      CAM = ReLU(Σ_k α_k A_k)   (B, 1, h, w)

upsampled bilinearly to the input's H × W. The result is shaped like the input by spreading
the map evenly over the C channels (each channel holds CAM / C), so that the channel sum used
by the metrics (:func:`attributions.pixel_map`) is the CAM itself.

Which layer: A are the rectified feature maps of the last convolutional layer, as in the paper
(VGG-16's ``relu5_3``). A model names its layer in a ``gradcam_layer`` attribute (a module name
relative to the module that holds it; every robustlens backbone does, see
:mod:`lightning_modules.backbones`); a model without one gets the activation module (ReLU,
softplus, ...) that follows its last ``nn.Conv2d`` in module order, with only normalisation or
dropout between them, or that convolution itself when no activation follows. Any module can be
chosen by name instead. With a global-average-pooling layer and one linear layer after A,
α_k = W_tk / (h·w) and Grad-CAM is ReLU(CAM) / (h·w), CAM of Zhou et al. (CVPR 2016).

A backbone can also lay a layer's output out as a map: the ``gradcam_reshape(output) -> (B, K,
h, w)`` method of the innermost submodule holding the layer, if any, is applied to the
activations and their gradients (a ViT's tokens without the class token, as a grid of patches;
see :mod:`lightning_modules.timm_backbones`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attributions.base import GradientAttribution, select_logits
from common.modes import ModelMode


GRADCAM_LAYER_ATTRIBUTE = "gradcam_layer"
GRADCAM_RESHAPE_ATTRIBUTE = "gradcam_reshape"

#: the modules the default layer may pass through after the last convolution, and the
#: activations whose output it takes
_PASS_THROUGH = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.Identity, nn.Dropout, nn.Dropout2d)
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Softplus, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.GELU, nn.Hardswish, nn.Mish)


def conv_layer_names(model: nn.Module) -> list[str]:
    """Names (as in ``model.named_modules()``) of every ``nn.Conv2d`` of ``model``, in order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


def default_gradcam_layer(model: nn.Module) -> str:
    """The name of the module whose output Grad-CAM explains when no layer is chosen.

    The first ``gradcam_layer`` attribute found in ``model.named_modules()`` (outermost first),
    prefixed with the name of the module holding it; else the activation after the last
    ``nn.Conv2d`` (see the module docstring), else that convolution.

    Raises:
        ValueError: the model declares that it has no Grad-CAM layer (``gradcam_layer = None``,
            torchvision's transformers) or has no ``nn.Conv2d``.
    """
    for prefix, module in model.named_modules():
        if not hasattr(module, GRADCAM_LAYER_ATTRIBUTE):
            continue
        named = getattr(module, GRADCAM_LAYER_ATTRIBUTE)
        if named is None:
            raise ValueError(
                f"layer must name a module: {type(module).__name__} has no convolutional feature maps "
                f"for Grad-CAM by default (convolutions: {conv_layer_names(model)})"
            )
        return f"{prefix}.{named}" if prefix else str(named)
    leaves = [(name, module) for name, module in model.named_modules() if next(module.children(), None) is None]
    convs = [i for i, (_, module) in enumerate(leaves) if isinstance(module, nn.Conv2d)]
    if not convs:
        raise ValueError("layer must name a module: the model has no nn.Conv2d to default to")
    for name, module in leaves[convs[-1] + 1 :]:
        if isinstance(module, _ACTIVATIONS):
            return name
        if not isinstance(module, _PASS_THROUGH):
            break
    return leaves[convs[-1]][0]


def resolve_layer(model: nn.Module, layer: str | None) -> str:
    """``layer``, or the model's Grad-CAM layer when None, checked to be a module of ``model``
    (a ValueError names the convolutions otherwise)."""
    name = default_gradcam_layer(model) if layer is None else layer
    if name not in dict(model.named_modules()):
        raise ValueError(f"layer must be a module of the model (convolutions: {conv_layer_names(model)}), got {name!r}")
    return name


def activation_reshape(model: nn.Module, layer: str) -> Callable[[Tensor], Tensor] | None:
    """The ``gradcam_reshape`` of the innermost submodule of ``model`` that holds ``layer``, or None."""
    found = None
    for prefix, module in model.named_modules():
        reshape = getattr(module, GRADCAM_RESHAPE_ATTRIBUTE, None)
        if callable(reshape) and (not prefix or layer.startswith(prefix + ".")):
            found = reshape
    return found


class GradCAM(GradientAttribution, name="grad_cam"):
    """Gradient-weighted class activation map of one layer, upsampled to the input size.

    Args:
        layer: name of the module whose output is used (as in ``model.named_modules()``, for
            example "net.features.6"); None takes the model's own Grad-CAM layer, the rectified
            maps of its last convolutional stage (:func:`default_gradcam_layer`). The module
            must be called once per forward pass.
        relu: apply the ReLU of the paper (keep only evidence for the class).
        create_graph: keep the graph (training through the explanation, attacking it).
        model_mode: "eval", "train" or None (leave the model as it is).
    """

    def __init__(
        self,
        layer: str | None = None,
        relu: bool = True,
        create_graph: bool = False,
        model_mode: ModelMode | None = "eval",
    ) -> None:
        super().__init__(create_graph, model_mode)
        if layer is not None and not isinstance(layer, str):
            raise ValueError(f"layer must be a module name or None, got {layer!r}")
        self.layer = layer
        self.relu = bool(relu)

    def layer_name(self, model: nn.Module) -> str:
        """The name of the module whose activations are explained (a ValueError names the choices)."""
        return resolve_layer(model, self.layer)

    def find_layer(self, model: nn.Module) -> nn.Module:
        """The module whose activations are explained (raises a ValueError naming the choices)."""
        return model.get_submodule(self.layer_name(model))

    def check_model(self, model: nn.Module) -> None:
        """Raise a ValueError naming the choices when the layer is not a module of ``model``."""
        self.find_layer(model)

    def channel_weights(self, activations: Tensor, grad: Tensor) -> Tensor:
        """Grad-CAM's α_k = mean_{u,v} ∂f_t/∂A_k[u, v]: (B, K, h, w) each -> (B, K, 1, 1)."""
        return grad.mean(dim=(2, 3), keepdim=True)

    def attribute(self, model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
        x = self._input(inputs)  # requires grad, so the activations are in a graph even with frozen weights
        name = self.layer_name(model)
        logits, raw = layer_output(model, name, x)
        score = select_logits(logits, target)  # (B,)
        (grad,) = torch.autograd.grad(score.sum(), [raw], create_graph=self.create_graph)
        reshape = activation_reshape(model, name) or (lambda t: t)
        activations, grad = reshape(raw), reshape(grad)  # (B, K, h, w) each
        cam = (self.channel_weights(activations, grad) * activations).sum(dim=1, keepdim=True)  # (B, 1, h, w)
        if self.relu:
            cam = F.relu(cam)
        return spread_over_input(cam, x)


def layer_output(model: nn.Module, name: str, x: Tensor) -> tuple[Tensor, Tensor]:
    """The logits of ``model(x)`` and the output of its module ``name``, in the same graph.

    Raises:
        ValueError: the module is not called exactly once per forward, or its output (after the
            model's ``gradcam_reshape``, if any) is not a (B, K, h, w) map.
    """
    layer = model.get_submodule(name)
    captured: list[Tensor] = []
    handle = layer.register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        logits = model(x)
    finally:
        handle.remove()
    reshape = activation_reshape(model, name) or (lambda t: t)
    if len(captured) != 1 or not isinstance(captured[0], Tensor) or reshape(captured[0]).dim() != 4:
        raise ValueError(
            f"layer must be a module called once per forward with a (B, K, h, w) output, "
            f"got {name!r} called {len(captured)} times"
        )
    return logits, captured[0]


def spread_over_input(cam: Tensor, x: Tensor) -> Tensor:
    """A (B, 1, h, w) map upsampled bilinearly to ``x``'s H × W and spread evenly over its C
    channels (each holds CAM / C, so the channel sum is the CAM): (B, C, H, W)."""
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)  # (B, 1, H, W)
    return (cam / x.shape[1]).expand(-1, x.shape[1], -1, -1).contiguous()
