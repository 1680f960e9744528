"""Similarity of two batches of explanation maps, one score per example.

Every function takes two tensors (B, ...) (usually per-pixel maps (B, H, W) from
:func:`attributions.pixel_map`), compares row i of one with row i of the other over all the
remaining dimensions, and returns (B,) scores. Everything is vectorised over the batch.

- top-k intersection, Pearson's r, Spearman's ρ, Kendall's τ_b and cosine similarity: see
  :mod:`common.similarity` (the attack on explanations scores with them too);
- SSIM (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004) of maps rescaled to [0, 1];
- HOG similarity (Adebayo et al., NeurIPS 2018): Spearman's ρ between the histogram-of-oriented-
  gradients features (Dalal & Triggs, CVPR 2005; scikit-image's ``hog``, an optional dependency)
  of the two maps rescaled to [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from common.filters import gaussian_kernel1d
from common.similarity import spearman


def _unit_range(maps: Tensor) -> Tensor:
    """Rescale each map (B, H, W) to [0, 1] by its own min and max (constant maps become 0)."""
    flat = maps.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    span = (flat.max(dim=1).values.view(-1, 1, 1) - low).clamp_min(1e-12)
    return (maps - low) / span


def ssim(a: Tensor, b: Tensor, sigma: float = 1.5, window: int = 11) -> Tensor:
    """Mean structural similarity of maps (B, H, W), each rescaled to [0, 1] first: (B,).

    Gaussian window (σ = 1.5, 11 × 11, shrunk to fit small maps), constants C1 = 0.01², C2 = 0.03²,
    mean over the positions where the window fits (no padding), as Wang et al. (2004).
    """
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"maps must both be (B, H, W), got {tuple(a.shape)} and {tuple(b.shape)}")
    size = min(window, a.shape[1], a.shape[2])
    size -= 1 - size % 2  # odd
    kernel = gaussian_kernel1d(sigma, radius=size // 2, device=a.device).to(torch.float64)
    weight_row, weight_col = kernel.view(1, 1, 1, -1), kernel.view(1, 1, -1, 1)

    def smooth(t: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(t, weight_row), weight_col)  # (B, 1, H', W')

    x = _unit_range(a.double()).unsqueeze(1)  # (B, 1, H, W)
    y = _unit_range(b.double()).unsqueeze(1)
    mu_x, mu_y = smooth(x), smooth(y)
    var_x = smooth(x * x) - mu_x**2
    var_y = smooth(y * y) - mu_y**2
    cov = smooth(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return index.flatten(1).mean(dim=1).float()


def require_hog() -> Callable[..., np.ndarray]:
    """scikit-image's ``hog``, or a ValueError saying how to install it (before any work starts)."""
    try:
        from skimage.feature import hog
    except ImportError as error:
        raise ValueError(
            "similarity 'hog' needs scikit-image, an optional dependency: pip install scikit-image "
            "(or the project's extra: pip install -e '.[hog]'); or choose 'spearman' or 'ssim'"
        ) from error
    return hog


def hog_cell_size(height: int, width: int) -> int:
    """Pixels per HOG cell for an H × W map: Adebayo et al.'s 16 px at 299 px, scaled to the map,
    at least 4 px, and at most a third of the side (three cells make one block)."""
    side = min(height, width)
    if side < 3:
        raise ValueError(f"maps must be at least 3 × 3 pixels for HOG features, got {height} × {width}")
    return max(1, min(max(4, round(16 * side / 299)), side // 3))


def hog_similarity(a: Tensor, b: Tensor, pixels_per_cell: int | None = None) -> Tensor:
    """Spearman's ρ between the HOG features of maps (B, H, W), each rescaled to [0, 1]: (B,).

    As Adebayo et al.'s code: scikit-image's ``hog`` (9 orientations, 3 × 3 cells per block,
    L2-Hys block norm) of the [0, 1]-normalised maps, compared by rank correlation. Their cells
    are 16 px on 299 px images; here :func:`hog_cell_size` scales that to the map's size unless
    ``pixels_per_cell`` is given. Computed on the CPU with NumPy.
    """
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"maps must both be (B, H, W), got {tuple(a.shape)} and {tuple(b.shape)}")
    hog = require_hog()
    cell = hog_cell_size(a.shape[1], a.shape[2]) if pixels_per_cell is None else int(pixels_per_cell)

    def features(maps: Tensor) -> Tensor:
        unit = _unit_range(maps.detach().double()).cpu().numpy()
        rows = [
            hog(m, orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(3, 3), block_norm="L2-Hys")
            for m in unit
        ]
        return torch.from_numpy(np.stack(rows))  # (B, F)

    return spearman(features(a), features(b)).to(a.device)
