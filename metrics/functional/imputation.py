"""Noisy linear imputation of removed pixels (Rong, Leemann, Borisov, Kasneci & Kasneci, "A
Consistent and Efficient Evaluation Strategy for Attribution Methods", ICML 2022).

Every removed pixel i takes the weighted mean of its eight neighbours, whether those are kept
(their values) or removed (their imputed values). With the authors' weights w = 1/6 for the four
direct neighbours and 1/12 for the four diagonal ones (``road/imputations.py``,
``neighbors_weights``), and s_i the total weight of i's neighbours that lie inside the image,
the removed values v solve one sparse linear system per image and channel:

    s_i v_i − Σ_{j ∈ N(i), removed} w_ij v_j = Σ_{j ∈ N(i), kept} w_ij x_j      for every removed i.

Gaussian noise of standard deviation ``noise`` (0.01 by the authors) is then added to the
imputed values. The authors solve each system with ``scipy.sparse.linalg.spsolve``, one image at
a time on the CPU. Here the system is written as a 3 × 3 convolution restricted to the removed
pixels: the matrix is symmetric, and positive definite whenever at least one pixel is kept (every
connected group of removed pixels then touches a kept one), so the batch is solved at once by
Jacobi-preconditioned conjugate gradients in float64, on any device, to a relative residual of
``tol``. The result equals the direct solve to solver precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# The authors' neighbour weights: direct neighbours 1/6, diagonal ones 1/12 (they sum to 1).
NEIGHBOUR_KERNEL = (
    (1.0 / 12.0, 1.0 / 6.0, 1.0 / 12.0),
    (1.0 / 6.0, 0.0, 1.0 / 6.0),
    (1.0 / 12.0, 1.0 / 6.0, 1.0 / 12.0),
)


def _neighbour_sum(values: Tensor, kernel: Tensor) -> Tensor:
    """Σ_j w_ij values_j over the in-image neighbours of every pixel, per channel: (B, C, H, W)."""
    channels = values.shape[1]
    return F.conv2d(values, kernel.expand(channels, 1, 3, 3), padding=1, groups=channels)


def linear_imputation(x: Tensor, removed: Tensor, tol: float = 1e-10, max_iter: int | None = None) -> Tensor:
    """x with its ``removed`` pixels replaced by the solution of the neighbour-mean system (no noise).

    Args:
        x: (B, C, H, W) images.
        removed: (B, 1, H, W) or (B, H, W) boolean mask of the pixels to impute (all channels).
        tol: stop when ‖r‖ ≤ tol · ‖b‖ for every image and channel.
        max_iter: iteration cap; None is the number of pixels (where exact CG would have converged).

    Returns:
        (B, C, H, W) images, kept pixels untouched, in x's dtype.
    """
    if removed.dim() == 3:
        removed = removed.unsqueeze(1)
    b, c, h, w = x.shape
    if tuple(removed.shape) != (b, 1, h, w):
        raise ValueError(f"removed must have shape {(b, 1, h, w)} or {(b, h, w)}, got {tuple(removed.shape)}")
    max_iter = h * w if max_iter is None else max_iter
    xd = x.detach().double()
    kernel = torch.tensor(NEIGHBOUR_KERNEL, dtype=torch.float64, device=x.device).view(1, 1, 3, 3)
    m = removed.to(torch.float64)  # (B, 1, H, W) 1 where imputed
    weight_sum = _neighbour_sum(torch.ones(1, 1, h, w, dtype=torch.float64, device=x.device), kernel)  # s_i

    def apply(v: Tensor) -> Tensor:  # M v on the removed pixels, v zero elsewhere
        return m * (weight_sum * v - _neighbour_sum(v, kernel))

    rhs = m * _neighbour_sum(xd * (1.0 - m), kernel)  # Σ_{kept j} w_ij x_j
    inverse_diagonal = m / weight_sum  # Jacobi preconditioner on the removed pixels
    v = torch.zeros_like(rhs)
    r = rhs.clone()
    z = inverse_diagonal * r
    p = z.clone()
    rz = (r * z).sum(dim=(2, 3), keepdim=True)  # (B, C, 1, 1): one system per image and channel
    stop = tol * rhs.flatten(2).norm(dim=2).view(b, c, 1, 1)
    for _ in range(max_iter):
        if bool((r.flatten(2).norm(dim=2).view(b, c, 1, 1) <= stop).all()):
            break
        mp = apply(p)
        curvature = (p * mp).sum(dim=(2, 3), keepdim=True)
        alpha = torch.where(curvature > 0, rz / curvature.clamp_min(1e-300), torch.zeros_like(rz))
        v = v + alpha * p
        r = r - alpha * mp
        z = inverse_diagonal * r
        rz_next = (r * z).sum(dim=(2, 3), keepdim=True)
        beta = torch.where(rz > 0, rz_next / rz.clamp_min(1e-300), torch.zeros_like(rz))
        p = z + beta * p
        rz = rz_next
    return torch.where(removed.expand_as(x), v.to(x.dtype), x)


def noisy_linear_imputation(x: Tensor, removed: Tensor, noise: Tensor | None, noise_std: float = 0.01) -> Tensor:
    """:func:`linear_imputation` plus ``noise_std`` × ``noise`` (standard normal, (B, C, H, W)) on the
    removed pixels; ``noise=None`` imputes without noise."""
    filled = linear_imputation(x, removed)
    if noise is None or noise_std == 0:
        return filled
    mask = (removed.unsqueeze(1) if removed.dim() == 3 else removed).expand_as(x)
    return torch.where(mask, filled + noise_std * noise.to(x.dtype), filled)
