"""Small image filters used by attributions and metrics: Gaussian blur and Sobel gradients.

All work per channel (depthwise convolutions) on (B, C, H, W) batches, with replicated borders
so that any kernel size works on any image size, and are differentiable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_kernel1d(sigma: float, radius: int | None = None, device: torch.device | None = None) -> Tensor:
    """Normalised 1-D Gaussian of standard deviation ``sigma`` over [-radius, radius] (default ⌈3σ⌉)."""
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    radius = max(1, math.ceil(3.0 * sigma)) if radius is None else radius
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    return kernel / kernel.sum()


def _depthwise(x: Tensor, kernel: Tensor) -> Tensor:
    """Convolve every channel of ``x`` (B, C, H, W) with one 2-D ``kernel`` (kh, kw), same size out."""
    c = x.shape[1]
    kh, kw = kernel.shape
    padded = F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2), mode="replicate")
    weight = kernel.to(dtype=x.dtype, device=x.device).expand(c, 1, kh, kw)
    return F.conv2d(padded, weight, groups=c)


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Blur each channel of ``x`` (B, C, H, W) with a Gaussian of ``sigma`` pixels (separable)."""
    k = gaussian_kernel1d(sigma, device=x.device)
    x = _depthwise(x, k.view(1, -1))  # along W
    return _depthwise(x, k.view(-1, 1))  # along H


def sobel_magnitude(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Per-channel Sobel gradient magnitude sqrt(Gx² + Gy² + eps) of ``x`` (B, C, H, W).

    ``eps`` keeps the square root differentiable where the image is flat.
    """
    gx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    return torch.sqrt(_depthwise(x, gx) ** 2 + _depthwise(x, gx.t()) ** 2 + eps)
