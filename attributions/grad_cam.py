"""Grad-CAM (Selvaraju, Cogswell, Das, Vedantam, Parikh & Batra, "Grad-CAM: Visual Explanations
from Deep Networks via Gradient-based Localization", ICCV 2017).

For the activations A (B, K, h, w) of a convolutional layer and the target logit f_t:

    α_k = mean_{u,v} ∂f_t/∂A_k[u, v],      CAM = ReLU(Σ_k α_k A_k)   (B, 1, h, w)

upsampled bilinearly to the input's H × W. The result is shaped like the input by spreading
the map evenly over the C channels (each channel holds CAM / C), so that the channel sum used
by the metrics (:func:`attributions.pixel_map`) is the CAM itself.

A backbone can name its Grad-CAM layer and lay its output out as a map: a submodule with a
``grad_cam_layer`` attribute (a name relative to it) gives the default layer, and its
``grad_cam_reshape(output) -> (B, K, h, w)`` method, if any, is applied to the activations and
their gradients of a layer inside it (a ViT's tokens without the class token, as a grid of
patches; see :mod:`lightning_modules.timm_backbones`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks.modes import ModelMode
from attributions.base import GradientAttribution, select_logits


def conv_layer_names(model: nn.Module) -> list[str]:
    """Names (as in ``model.named_modules()``) of every ``nn.Conv2d`` of ``model``, in order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


def backbone_layer_name(model: nn.Module) -> str | None:
    """The Grad-CAM layer a submodule of ``model`` names (its ``grad_cam_layer``), as a name in
    ``model``, or None."""
    for prefix, module in model.named_modules():
        layer = getattr(module, "grad_cam_layer", None)
        if isinstance(layer, str) and layer:
            return f"{prefix}.{layer}" if prefix else layer
    return None


def activation_reshape(model: nn.Module, layer: str) -> Callable[[Tensor], Tensor] | None:
    """The ``grad_cam_reshape`` of the innermost submodule of ``model`` that holds ``layer``, or None."""
    found = None
    for prefix, module in model.named_modules():
        reshape = getattr(module, "grad_cam_reshape", None)
        if callable(reshape) and (not prefix or layer.startswith(prefix + ".")):
            found = reshape
    return found


class GradCAM(GradientAttribution):
    """Gradient-weighted class activation map of one layer, upsampled to the input size.

    Args:
        layer: name of the module whose output is used (as in ``model.named_modules()``, for
            example "net.features.9"); None takes the layer the backbone names (its
            ``grad_cam_layer``), else the model's last ``nn.Conv2d``. The output
            must not be modified in place later in the forward pass.
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

    def find_layer(self, model: nn.Module) -> nn.Module:
        """The module whose activations are explained (raises a ValueError naming the choices)."""
        convs = conv_layer_names(model)
        named = backbone_layer_name(model) if self.layer is None else None
        if named is not None:
            return model.get_submodule(named)
        if self.layer is None:
            if not convs:
                raise ValueError("layer must name a module: the model has no nn.Conv2d to default to")
            return model.get_submodule(convs[-1])
        modules = dict(model.named_modules())
        if self.layer not in modules:
            raise ValueError(f"layer must be a module of the model (convolutions: {convs}), got {self.layer!r}")
        return modules[self.layer]

    def attribute(self, model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
        layer = self.find_layer(model)
        x = self._input(inputs)  # requires grad, so the activations are in a graph even with frozen weights
        captured: list[Tensor] = []
        handle = layer.register_forward_hook(lambda module, args, output: captured.append(output))
        try:
            logits = model(x)
        finally:
            handle.remove()
        layer_name = next((n for n, m in model.named_modules() if m is layer), "")
        reshape = activation_reshape(model, layer_name) or (lambda t: t)
        if len(captured) != 1 or not isinstance(captured[0], Tensor) or reshape(captured[0]).dim() != 4:
            raise ValueError(
                f"layer must be a module called once per forward with a (B, K, h, w) output, "
                f"got {self.layer or layer_name or 'the last Conv2d'} called {len(captured)} times"
            )
        score = select_logits(logits, target)  # (B,)
        (grad,) = torch.autograd.grad(score.sum(), [captured[0]], create_graph=self.create_graph)
        activations, grad = reshape(captured[0]), reshape(grad)  # (B, K, h, w) each
        alpha = grad.mean(dim=(2, 3), keepdim=True)  # (B, K, 1, 1)
        cam = (alpha * activations).sum(dim=1, keepdim=True)  # (B, 1, h, w)
        if self.relu:
            cam = F.relu(cam)
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)  # (B, 1, H, W)
        return (cam / x.shape[1]).expand(-1, x.shape[1], -1, -1).contiguous()  # (B, C, H, W)
