"""Similarity of two batches of explanation maps, one score per example.

Every function takes two tensors (B, ...) (usually per-pixel maps (B, H, W) from
:func:`attributions.pixel_map`), compares row i of one with row i of the other over all the
remaining dimensions, and returns (B,) scores. Everything is vectorised over the batch.

- top-k intersection (Ghorbani, Abid & Zou, AAAI 2019): |top_k(a) ∩ top_k(b)| / k;
- Spearman's ρ: Pearson correlation of the average ranks (ties share their mean rank, as in
  ``scipy.stats.spearmanr``);
- Kendall's τ_b: Σ_{i<j} sgn(a_i − a_j) sgn(b_i − b_j) / sqrt(n_a · n_b), with n_a, n_b the
  numbers of pairs not tied in a, in b (``scipy.stats.kendalltau``'s default variant);
- cosine similarity ⟨a, b⟩ / (‖a‖‖b‖);
- SSIM (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004) of maps rescaled to [0, 1];
- HOG similarity (Adebayo et al., NeurIPS 2018): Spearman's ρ between the histogram-of-oriented-
  gradients features (Dalal & Triggs, CVPR 2005; scikit-image's ``hog``, an optional dependency)
  of the two maps rescaled to [0, 1].

Rank correlations are undefined (NaN, as in scipy) when a row is constant.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from attributions.filters import gaussian_kernel1d


def _flat_pair(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    if a.shape != b.shape:
        raise ValueError(f"maps must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dim() < 2:
        raise ValueError(f"maps must be batched (B, ...), got shape {tuple(a.shape)}")
    return a.flatten(1), b.flatten(1)


def topk_intersection(a: Tensor, b: Tensor, k: int) -> Tensor:
    """Share of the k largest entries of ``a`` that are also among the k largest of ``b``: (B,).

    1 for identical maps; ties inside the top k are broken by ``torch.topk``.
    """
    a, b = _flat_pair(a, b)
    if not 1 <= k <= a.shape[1]:
        raise ValueError(f"k must be in [1, {a.shape[1]}] (the number of features), got {k}")
    top_a = torch.zeros_like(a, dtype=torch.bool).scatter_(1, a.topk(k, dim=1).indices, True)  # (B, P)
    top_b = torch.zeros_like(b, dtype=torch.bool).scatter_(1, b.topk(k, dim=1).indices, True)
    return (top_a & top_b).sum(dim=1).to(a.dtype) / k


def average_ranks(values: Tensor) -> Tensor:
    """1-based ranks of each row of ``values`` (B, n), ties sharing their mean rank (B, n)."""
    sorted_values, order = values.sort(dim=1)
    first = torch.searchsorted(sorted_values, sorted_values, right=False)  # (B, n) start of each tie group
    after = torch.searchsorted(sorted_values, sorted_values, right=True)  # (B, n) one past its end
    ranks_sorted = (first + after + 1).to(torch.float64) / 2.0  # mean of the 1-based ranks first+1..after
    return torch.empty_like(ranks_sorted).scatter_(1, order, ranks_sorted)


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of row i of ``a`` with row i of ``b``: (B,) (NaN for a constant row)."""
    a, b = _flat_pair(a, b)
    a = a.double() - a.double().mean(dim=1, keepdim=True)
    b = b.double() - b.double().mean(dim=1, keepdim=True)
    denom = (a.pow(2).sum(dim=1) * b.pow(2).sum(dim=1)).sqrt()
    out = (a * b).sum(dim=1) / denom
    return torch.where(denom > 0, out, torch.full_like(out, float("nan"))).float()


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman's rank correlation ρ per example: (B,)."""
    a, b = _flat_pair(a, b)
    return pearson(average_ranks(a), average_ranks(b))


def _min_ranks(values: Tensor) -> Tensor:
    """0-based rank of each entry of (B, n), tied entries sharing the lowest rank: (B, n) int64."""
    sorted_values, order = values.sort(dim=1)
    first = torch.searchsorted(sorted_values, sorted_values, right=False)  # (B, n)
    return torch.empty_like(first).scatter_(1, order, first)


def _tied_pairs(sorted_values: Tensor) -> Tensor:
    """Σ over groups of equal values of t(t − 1)/2, for rows sorted ascending (B, n): (B,)."""
    first = torch.searchsorted(sorted_values, sorted_values, right=False)
    after = torch.searchsorted(sorted_values, sorted_values, right=True)
    return (after - first - 1).sum(dim=1) // 2  # each member of a group of t counts t − 1 partners


def _inversions(values: Tensor) -> Tensor:
    """Number of pairs i < j with v_i > v_j in each row of (B, n) int64 in [0, n): (B,).

    Bottom-up merge sort: at block size s the right half of every pair of sorted blocks looks up
    how many left-half entries exceed it (``searchsorted``), then the pair is sorted into one
    block; O(n log² n) work in log₂ n vectorised rounds.
    """
    b, n = values.shape
    m = 1 << max(0, (n - 1).bit_length())
    # Padding at the end with a value above every entry adds no inversion.
    blocks = torch.cat([values, values.new_full((b, m - n), n)], dim=1) if m > n else values
    count = torch.zeros(b, dtype=torch.int64, device=values.device)
    size = 1
    while size < m:
        pairs = blocks.view(b, m // (2 * size), 2, size)
        left, right = pairs[:, :, 0].contiguous(), pairs[:, :, 1].contiguous()  # each sorted
        count += (size - torch.searchsorted(left, right, right=True)).sum(dim=(1, 2))
        blocks = pairs.view(b, m // (2 * size), 2 * size).sort(dim=2).values.view(b, m)
        size *= 2
    return count


def kendall(a: Tensor, b: Tensor) -> Tensor:
    """Kendall's τ_b per example: (B,), in O(n log² n) per example (Knight's algorithm, batched).

    With n₀ = n(n − 1)/2 pairs, n₁ and n₂ the pairs tied in a and in b, n₃ those tied in both, and
    the entries sorted by (a, b), the discordant pairs are the inversions of b:
    τ_b = (n₀ − n₁ − n₂ + n₃ − 2·inversions) / sqrt((n₀ − n₁)(n₀ − n₂)), as ``scipy.stats.kendalltau``.
    """
    a, b = _flat_pair(a, b)
    n = a.shape[1]
    rank_a, rank_b = _min_ranks(a), _min_ranks(b)  # (B, n) int64
    joint = rank_a * n + rank_b  # equal exactly when both a and b tie
    joint_sorted, order = joint.sort(dim=1)
    total = n * (n - 1) // 2
    tied_a = _tied_pairs(rank_a.sort(dim=1).values)
    tied_b = _tied_pairs(rank_b.sort(dim=1).values)
    tied_both = _tied_pairs(joint_sorted)
    discordant = _inversions(rank_b.gather(1, order))
    numerator = (total - tied_a - tied_b + tied_both - 2 * discordant).double()
    denom = ((total - tied_a).double() * (total - tied_b).double()).sqrt()
    tau = numerator / denom.clamp_min(1e-300)
    return torch.where(denom > 0, tau, torch.full_like(tau, float("nan"))).float()


def cosine(a: Tensor, b: Tensor, eps: float = 1e-12) -> Tensor:
    """Cosine similarity per example: (B,) (0 when either row is all zeros)."""
    a, b = _flat_pair(a, b)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(eps)


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
