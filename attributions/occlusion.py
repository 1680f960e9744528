"""Occlusion (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014).

A square window of ``window`` × ``window`` pixels (all channels) slides over the image with step
``stride``; at each position the window's pixels are set to ``baseline`` and the drop of the
target score is recorded. A pixel's attribution is the mean drop over the windows that cover it:

    Φ(x)[u, v] = (1 / |W(u, v)|) Σ_{w ∈ W(u, v)} (f_t(x) − f_t(x with window w set to the baseline))

This is Captum's ``Occlusion`` convention (the sum of the drops divided by the number of windows
covering each element). Here the windows span all C channels, and the pixel's value is spread
evenly over them (each channel holds Φ / C) so that the channel sum used by the metrics
(:func:`attributions.pixel_map`) is the mean drop itself, as for Grad-CAM; Captum's ``Occlusion``
with a (C, p, p) window writes the mean drop into every channel, C times more in the sum.
``window=1`` is Ancona et al.'s occlusion-1 (ICLR 2018): on a linear model with one channel and
a zero baseline it is input × weight. Window positions start at 0 and step by ``stride`` while
the window fits; pixels no window covers (when the stride does not divide the image side minus
the window) get 0.

Batched: the P window positions of every example are B·P occluded images, run through the model
in forward passes of at most ``batch_size`` images, plus one forward of the unoccluded batch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attributions.base import AttributionMethod, select_logits
from common.modes import ModelMode


def window_masks(height: int, width: int, window: int, stride: int, device: torch.device) -> Tensor:
    """(P, H, W) masks, 1 inside each window position (row-major order), 0 elsewhere.

    Raises:
        ValueError: the window is larger than the image.
    """
    if window > min(height, width):
        raise ValueError(f"window must be <= the image side ({height}×{width}), got {window}")
    starts_r = torch.arange(0, height - window + 1, stride, device=device)[:, None]  # (Pr, 1)
    starts_c = torch.arange(0, width - window + 1, stride, device=device)[:, None]  # (Pc, 1)
    r, c = torch.arange(height, device=device)[None], torch.arange(width, device=device)[None]
    in_rows = (r >= starts_r) & (r < starts_r + window)  # (Pr, H)
    in_cols = (c >= starts_c) & (c < starts_c + window)  # (Pc, W)
    masks = in_rows[:, None, :, None] & in_cols[None, :, None, :]  # (Pr, Pc, H, W)
    return masks.flatten(0, 1)


class Occlusion(AttributionMethod, name="occlusion"):
    """Mean drop of the target logit when square windows over the pixel are set to a baseline.

    Args:
        window: side of the square window in pixels (1: occlusion-1 of Ancona et al.).
        stride: step between window positions in pixels.
        baseline: the value the occluded pixels take, in the input's [0, 1] pixel space (0: black).
        batch_size: occluded images per forward pass (bounds memory).
        model_mode: "eval", "train" or None (leave the model as it is).
    """

    differentiable = False
    costly = True  # many forward passes per image: out of --fast reports' default list

    def __init__(
        self,
        window: int = 4,
        stride: int = 2,
        baseline: float = 0.0,
        batch_size: int = 512,
        model_mode: ModelMode | None = "eval",
    ) -> None:
        super().__init__(model_mode)
        for field, value in (("window", window), ("stride", stride), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{field} must be an integer >= 1, got {value!r}")
        if isinstance(baseline, bool) or not isinstance(baseline, (int, float)):
            raise ValueError(f"baseline must be a number (a pixel value), got {baseline!r}")
        self.window = window
        self.stride = stride
        self.baseline = float(baseline)
        self.batch_size = batch_size

    @torch.no_grad()
    def attribute(self, model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
        x = inputs.detach()
        b, c, h, w = x.shape
        masks = window_masks(h, w, self.window, self.stride, x.device).to(x.dtype)  # (P, H, W)
        p = masks.shape[0]
        reference = select_logits(model(x), target)  # (B,)
        scores = torch.empty(b * p, device=x.device, dtype=x.dtype)
        for chunk in torch.arange(b * p, device=x.device).split(self.batch_size):
            example, position = chunk // p, chunk % p
            mask = masks[position].unsqueeze(1)  # (n, 1, H, W)
            occluded = x[example] * (1 - mask) + self.baseline * mask  # (n, C, H, W)
            scores[chunk] = select_logits(model(occluded), target[example])
        drops = reference[:, None] - scores.view(b, p)  # (B, P)
        total = torch.einsum("bp,phw->bhw", drops, masks)  # (B, H, W)
        count = masks.sum(dim=0)  # (H, W): windows covering each pixel
        mean = torch.where(count > 0, total / count.clamp(min=1), torch.zeros_like(total))
        return (mean / c).unsqueeze(1).expand(-1, c, -1, -1).contiguous()  # (B, C, H, W)
