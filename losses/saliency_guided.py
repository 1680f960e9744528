"""Saliency-guided training: make the features a model ignores really not matter.

Ismail, Corrada Bravo & Feizi, "Improving Deep Learning Interpretability by Saliency Guided
Training", NeurIPS 2021. For each batch:

1. the saliency s = |∇ₓ f_y(x)| with the model in eval mode and no graph (a mask selection,
   not a training signal);
2. x̃ = x with the fraction k of features of lowest saliency replaced by uninformative values
   (by default drawn uniformly from each image's own [min, max]);
3. L = meanᵢ [ CE(f(xᵢ), yᵢ) + λ · KL( p(xᵢ) ‖ p(x̃ᵢ) ) ], gradients flowing through both
   p(x) and p(x̃).

Defaults follow the paper: λ = 1 and k = 0.5 for 28×28 grey images (k = 0.1 is its choice on
32×32 colour images). The ranking uses the saliency magnitude, as the paper describes: the
features to mask are the ones the prediction is least sensitive to. The authors' code ranks
signed gradients by default, which masks the strongest *negative* evidence first and keeps
pixels of large negative gradient, not the irrelevant ones; ``saliency: signed`` reproduces it.

On colour images ``mask_unit`` chooses between masking whole pixels (all channels, ranked by
the channel-summed saliency) and single channel values. (The authors' code writes pixel ranks
into the flattened C·H·W tensor, which masks only the first channel; not reproduced.)
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.modes import module_mode
from losses.base import Objective, ObjectiveOutput, StepContext, upcast
from losses.input_gradients import clean_forward, input_leaf, per_example_logit_gradient
from losses.trades import kl_divergence

Replacement = Literal["uniform", "constant", "mean"]
REPLACEMENTS: tuple[str, ...] = ("uniform", "constant", "mean")
SaliencySign = Literal["abs", "signed"]
SALIENCY_SIGNS: tuple[str, ...] = ("abs", "signed")
MaskUnit = Literal["pixel", "value"]
MASK_UNITS: tuple[str, ...] = ("pixel", "value")


def saliency_map(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """∇ₓ f_y(x), (B, C, H, W), with the model in eval mode, no graph, weights' ``.grad`` untouched."""
    with torch.enable_grad(), module_mode(model, "eval"):
        x_leaf = input_leaf(x)
        return per_example_logit_gradient(x_leaf, model(x_leaf), y, create_graph=False).detach()


def lowest_saliency_mask(saliency: Tensor, fraction: float, sign: SaliencySign, unit: MaskUnit) -> Tensor:
    """Boolean mask (B, C, H, W) of the ``round(fraction · n)`` lowest-ranked units of each image.

    Args:
        saliency: (B, C, H, W) input gradients.
        fraction: k in (0, 1), the share of units to mask.
        sign: rank by |saliency| ("abs") or by the signed value ("signed").
        unit: "pixel" ranks the H·W pixels by the channel sum of the score and masks all
            channels of a chosen pixel; "value" ranks the C·H·W values one by one.
    """
    b, c, h, w = saliency.shape
    score = saliency.abs() if sign == "abs" else saliency
    if unit == "pixel":
        score = score.sum(1, keepdim=True)  # (B, 1, H, W)
    flat = score.flatten(1)  # (B, n)
    count = round(fraction * flat.shape[1])
    mask = torch.zeros_like(flat, dtype=torch.bool)
    if count > 0:
        lowest = flat.topk(count, dim=1, largest=False).indices  # (B, count)
        mask.scatter_(1, lowest, True)
    return mask.view(b, -1, h, w).expand(b, c, h, w)


def replacement_values(x: Tensor, replacement: Replacement, constant: float) -> Tensor:
    """Values (B, C, H, W), or broadcastable to it, that masked features are replaced with.

    "uniform": independent draws from U(min xᵢ, max xᵢ) of each image's own range (all
    channels); "constant": ``constant``; "mean": each image's per-channel mean.
    """
    if replacement == "uniform":
        low = x.flatten(1).amin(1).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
        high = x.flatten(1).amax(1).view(-1, 1, 1, 1)
        return low + (high - low) * torch.rand_like(x)
    if replacement == "mean":
        return x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
    return torch.full_like(x, constant)


class SaliencyGuidedTraining(Objective):
    """CE on x plus λ·KL(p(x) ‖ p(x̃)), with x̃ the input with its least salient features masked.

    Args:
        kl_weight: λ ≥ 0 (1 in the paper).
        mask_fraction: k in (0, 1), the share of features masked (0.5 for 28×28 grey
            images in the paper, 0.1 for 32×32 colour images).
        replacement: what masked features become: "uniform" (in each image's [min, max],
            the paper), "constant" (``replacement_value``) or "mean" (the image's channel mean).
        replacement_value: the value of the "constant" replacement.
        saliency: rank by the gradient's magnitude ("abs", the paper's description) or by its
            signed value ("signed", the authors' code default).
        mask_unit: "pixel" (all channels of a pixel, ranked by the channel-summed saliency) or
            "value" (each channel value on its own); the same on grey images.
    """

    log_name = "saliency_guided"

    def __init__(
        self,
        kl_weight: float = 1.0,
        mask_fraction: float = 0.5,
        replacement: Replacement = "uniform",
        replacement_value: float = 0.0,
        saliency: SaliencySign = "abs",
        mask_unit: MaskUnit = "pixel",
    ) -> None:
        super().__init__()
        if not kl_weight >= 0:
            raise ValueError(f"kl_weight must be >= 0, got {kl_weight}")
        if not 0.0 < mask_fraction < 1.0:
            raise ValueError(f"mask_fraction must be in (0, 1), got {mask_fraction}")
        if replacement not in REPLACEMENTS:
            raise ValueError(f"replacement must be one of {REPLACEMENTS}, got {replacement!r}")
        if not 0.0 <= replacement_value <= 1.0:
            raise ValueError(f"replacement_value must be in [0, 1] (pixel space), got {replacement_value}")
        if saliency not in SALIENCY_SIGNS:
            raise ValueError(f"saliency must be one of {SALIENCY_SIGNS}, got {saliency!r}")
        if mask_unit not in MASK_UNITS:
            raise ValueError(f"mask_unit must be one of {MASK_UNITS}, got {mask_unit!r}")
        self.kl_weight = float(kl_weight)
        self.mask_fraction = float(mask_fraction)
        self.replacement = replacement
        self.replacement_value = float(replacement_value)
        self.saliency = saliency
        self.mask_unit = mask_unit

    def masked_input(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """x̃ (B, C, H, W): ``x`` with its lowest-saliency features replaced; detached."""
        mask = lowest_saliency_mask(saliency_map(model, x, y), self.mask_fraction, self.saliency, self.mask_unit)
        fill = replacement_values(x.detach(), self.replacement, self.replacement_value)
        return torch.where(mask, fill, x.detach())

    def forward(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext | None = None) -> ObjectiveOutput:
        x_masked = self.masked_input(model, x, y)
        _, logits = clean_forward(model, x, context, needs_input_grad=False)
        logits_masked = model(x_masked)
        ce = F.cross_entropy(upcast(logits), y)
        kl = kl_divergence(logits, logits_masked).mean()
        loss = ce + self.kl_weight * kl
        return ObjectiveOutput(loss, {"ce": ce.detach(), "kl": kl.detach()}, logits)
