"""Similarity of two batches of maps, one score per example: top-k intersection, rank
correlations and cosine.

Every function takes two tensors (B, ...) (usually per-pixel explanation maps (B, H, W)),
compares row i of one with row i of the other over all the remaining dimensions, and returns
(B,) scores. Everything is vectorised over the batch. Explanation metrics
(:mod:`metrics.functional`) and the attack on explanations (:mod:`attacks.explanation`) both
score with these.

- top-k intersection (Ghorbani, Abid & Zou, AAAI 2019): |top_k(a) ∩ top_k(b)| / k;
- Pearson's r, and Spearman's ρ: Pearson correlation of the average ranks (ties share their
  mean rank, as in ``scipy.stats.spearmanr``);
- Kendall's τ_b: Σ_{i<j} sgn(a_i − a_j) sgn(b_i − b_j) / sqrt(n_a · n_b), with n_a, n_b the
  numbers of pairs not tied in a, in b (``scipy.stats.kendalltau``'s default variant);
- cosine similarity ⟨a, b⟩ / (‖a‖‖b‖).

Rank correlations are undefined (NaN, as in scipy) when a row is constant.
"""

from __future__ import annotations

import torch
from torch import Tensor


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
