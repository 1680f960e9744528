"""Score-CAM (Wang, Wang, Du, Yang, Zhang, Ding, Mardziel & Hu, "Score-CAM: Score-Weighted Visual
Explanations for Convolutional Neural Networks", CVPR workshops 2020).

A class activation map whose channel weights come from forward passes, not gradients. For the
activations A (B, K, h, w) of the layer, each channel is upsampled to the input and min-max
normalised into a mask H_k ∈ [0, 1]^{H×W}; the channel's weight is how much the target score
rises when the input is seen through that mask:

    H_k = (Up(A_k) − min Up(A_k)) / (max Up(A_k) − min Up(A_k))
    C_k = f_t(x ⊙ H_k) − f_t(x_b)                 (the channel-wise increase of confidence)
    α_k = softmax_k(C_k)                           (channel_weights="softmax", the paper)
    CAM = ReLU(Σ_k α_k A_k)

upsampled bilinearly to the input and spread over its channels like Grad-CAM
(:mod:`attributions.grad_cam`), on the same layer (:func:`attributions.default_gradcam_layer`).
f_t is the target logit. The softmax over channels is unchanged by subtracting the baseline
score f_t(x_b), which is therefore not computed.

The authors' code (github.com/haofanwang/Score-CAM) departs from the paper: a channel's weight
is the target's softmax probability over classes for x ⊙ H_k, with no baseline and no softmax
over channels, and the weighted maps are the upsampled ones. ``channel_weights="probability"``
gives that weight (the combination stays at the layer's resolution, as Grad-CAM here, and
bilinear upsampling commutes with the sum). A channel whose upsampled map is constant has no
mask (its normalisation divides by zero); as in the authors' code it gets weight 0.

The B·K masked inputs run through the model in forward passes of at most ``batch_size``
images, so the cost is K forward passes per example (K = 128 on ``small_cnn``'s default width).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attributions.base import AttributionMethod, select_logits
from attributions.grad_cam import activation_reshape, layer_output, resolve_layer, spread_over_input
from common.modes import ModelMode

ChannelWeights = Literal["softmax", "probability"]
CHANNEL_WEIGHTS: tuple[str, ...] = ("softmax", "probability")


class ScoreCAM(AttributionMethod, name="score_cam"):
    """Score-weighted class activation map of one layer, upsampled to the input size.

    Args:
        layer: name of the module whose output is used; None takes the model's Grad-CAM layer
            (:func:`attributions.default_gradcam_layer`).
        channel_weights: "softmax" (the paper: softmax over channels of the rise of the target
            logit) or "probability" (the authors' code: the target's class probability for the
            masked input).
        batch_size: masked images per forward pass (bounds memory).
        relu: apply the final ReLU of the paper.
        model_mode: "eval", "train" or None (leave the model as it is).
    """

    differentiable = False
    costly = True  # many forward passes per image: out of --fast reports' default list

    def __init__(
        self,
        layer: str | None = None,
        channel_weights: ChannelWeights = "softmax",
        batch_size: int = 256,
        relu: bool = True,
        model_mode: ModelMode | None = "eval",
    ) -> None:
        super().__init__(model_mode)
        if layer is not None and not isinstance(layer, str):
            raise ValueError(f"layer must be a module name or None, got {layer!r}")
        if channel_weights not in CHANNEL_WEIGHTS:
            raise ValueError(f"channel_weights must be one of {CHANNEL_WEIGHTS}, got {channel_weights!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.layer = layer
        self.channel_weights = channel_weights
        self.batch_size = batch_size
        self.relu = bool(relu)

    def check_model(self, model: nn.Module) -> None:
        """Raise a ValueError naming the choices when the layer is not a module of ``model``."""
        resolve_layer(model, self.layer)

    @torch.no_grad()
    def attribute(self, model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
        x = inputs.detach()
        name = resolve_layer(model, self.layer)
        _, raw = layer_output(model, name, x)
        activations = (activation_reshape(model, name) or (lambda t: t))(raw)  # (B, K, h, w)
        masks, valid = normalised_masks(activations, x.shape[-2:])  # (B, K, H, W), (B, K)
        scores = self.masked_scores(model, x, masks, target)  # (B, K)
        if self.channel_weights == "softmax":
            scores = scores.masked_fill(~valid, float("-inf"))
            weights = torch.softmax(scores, dim=1).nan_to_num(0.0)  # a row without any mask: all 0
        else:
            weights = scores * valid
        cam = (weights[:, :, None, None] * activations).sum(dim=1, keepdim=True)  # (B, 1, h, w)
        if self.relu:
            cam = F.relu(cam)
        return spread_over_input(cam, x)

    def masked_scores(self, model: nn.Module, x: Tensor, masks: Tensor, target: Tensor) -> Tensor:
        """The score of the target for every x[b] ⊙ masks[b, k]: (B, K), in chunks of ``batch_size``."""
        b, k = masks.shape[:2]
        rows = torch.arange(b * k, device=x.device)
        scores = torch.empty(b * k, device=x.device, dtype=x.dtype)
        for chunk in rows.split(self.batch_size):
            example, channel = chunk // k, chunk % k
            masked = x[example] * masks[example, channel].unsqueeze(1)  # (n, C, H, W)
            logits = model(masked)  # (n, classes)
            if self.channel_weights == "probability":
                logits = logits.softmax(dim=1)
            scores[chunk] = select_logits(logits, target[example])
        return scores.view(b, k)


def normalised_masks(activations: Tensor, size: torch.Size) -> tuple[Tensor, Tensor]:
    """Each channel upsampled bilinearly to ``size`` and min-max normalised to [0, 1].

    Returns:
        The masks (B, K, H, W) (zero for a constant channel) and which channels are not
        constant (B, K).
    """
    up = F.interpolate(activations, size=tuple(size), mode="bilinear", align_corners=False)  # (B, K, H, W)
    low = up.amin(dim=(2, 3), keepdim=True)
    span = up.amax(dim=(2, 3), keepdim=True) - low  # (B, K, 1, 1)
    valid = span > 0
    masks = torch.where(valid, (up - low) / torch.where(valid, span, torch.ones_like(span)), torch.zeros_like(up))
    return masks, valid.view(span.shape[:2])
