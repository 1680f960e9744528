"""Localisation against ground-truth masks (the synthetic shapes carry them).

All take per-pixel maps (B, H, W) and boolean masks (B, H, W) or (B, 1, H, W), and return (B,)
scores, NaN where the score is undefined (an empty mask, or no relevance at all), so that
such examples can be left out of a mean rather than counted as failures or successes.

- Pointing game (Zhang, Bargal, Lin, Brandt, Shen & Sclaroff, "Top-down Neural Attention by
  Excitation Backprop", ECCV 2016/IJCV 2018): 1 when the most relevant pixel lies in the mask
  (dilated by ``tolerance`` pixels), else 0; with ties, a hit when any maximum lies inside.
- Relevance mass accuracy (Arras, Osman & Samek, "CLEVR-XAI", Information Fusion 2022): the
  share of the positive relevance that falls inside the mask, Σ_{mask} R⁺ / Σ R⁺.
- Relevance rank accuracy (same paper): with K = |mask|, the share of the K most relevant pixels
  that lie in the mask (ties broken at random, per example).
- Spurious share: the share of the attribution mass Σ_c|Φ_c| that falls on a spurious artifact
  (the corner patch of the synthetic data); lower is better, NaN for images without the patch.

- Top-k intersection (Theiner et al. 2022), the ROC AUC of the map against the mask (Fawcett
  2006) and focus on 2 × 2 mosaics (Arias-Duart et al. 2022): see their functions.

Relevance R is the signed channel sum Σ_c Φ_c for the first three (as Arras et al.) and the
absolute mass for the spurious share.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from common.similarity import average_ranks
from metrics.functional.faithfulness import relevance_order_ranks


def _masks(maps: Tensor, masks: Tensor, name: str = "masks") -> Tensor:
    """Masks as bool (B, H, W), checked against maps (B, H, W)."""
    if masks.dim() == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if maps.dim() != 3 or masks.shape != maps.shape:
        raise ValueError(f"{name} must be (B, H, W) or (B, 1, H, W) like the maps {tuple(maps.shape)}, got {tuple(masks.shape)}")
    return masks.bool()


def _nan_where(undefined: Tensor, scores: Tensor) -> Tensor:
    return torch.where(undefined, torch.full_like(scores, float("nan")), scores)


def pointing_game(maps: Tensor, masks: Tensor, tolerance: int = 0) -> Tensor:
    """1.0 when the maximum of the map lies in the mask dilated by ``tolerance`` pixels: (B,)."""
    masks = _masks(maps, masks)
    if int(tolerance) != tolerance or tolerance < 0:
        raise ValueError(f"tolerance must be an integer >= 0, got {tolerance}")
    if tolerance > 0:
        size = 2 * int(tolerance) + 1
        masks = F.max_pool2d(masks[:, None].float(), size, stride=1, padding=int(tolerance))[:, 0].bool()
    flat, inside = maps.flatten(1), masks.flatten(1)
    top = flat.max(dim=1).values
    hit = (flat.masked_fill(~inside, float("-inf")).max(dim=1).values >= top).float()
    constant = flat.min(dim=1).values == top
    return _nan_where(constant | ~inside.any(dim=1), hit)


def relevance_mass(maps: Tensor, masks: Tensor) -> Tensor:
    """Σ_{mask} R⁺ / Σ R⁺ per example: (B,)."""
    masks = _masks(maps, masks)
    positive = maps.clamp(min=0).flatten(1).double()
    total = positive.sum(dim=1)
    inside = (positive * masks.flatten(1)).sum(dim=1)
    score = (inside / total.clamp_min(1e-300)).float()
    return _nan_where((total <= 0) | ~masks.flatten(1).any(dim=1), score)


def relevance_rank(maps: Tensor, masks: Tensor, seed: int = 0, ids: Tensor | None = None) -> Tensor:
    """Share of the |mask| most relevant pixels that lie inside the mask: (B,)."""
    masks = _masks(maps, masks)
    inside = masks.flatten(1)
    k = inside.sum(dim=1, keepdim=True)  # (B, 1)
    ranks = relevance_order_ranks(maps.flatten(1), seed, ids)  # (B, P), 0 = most relevant
    hits = ((ranks < k) & inside).sum(dim=1).float()
    score = hits / k.squeeze(1).clamp_min(1).float()
    return _nan_where(k.squeeze(1) == 0, score)


def spurious_share(maps: Tensor, spurious_masks: Tensor) -> Tensor:
    """Share of the attribution mass on the spurious patch (B,); ``maps`` should be Σ_c|Φ_c| ≥ 0."""
    masks = _masks(maps, spurious_masks, "spurious_masks")
    mass = maps.abs().flatten(1).double()
    total = mass.sum(dim=1)
    score = ((mass * masks.flatten(1)).sum(dim=1) / total.clamp_min(1e-300)).float()
    return _nan_where((total <= 0) | ~masks.flatten(1).any(dim=1), score)


def mask_topk_intersection(maps: Tensor, masks: Tensor, k: int | None = None) -> Tensor:
    """Top-k intersection (Theiner, Müller-Budack & Ewerth, "Interpretable Semantic Photo
    Geolocation", WACV 2022): the share of the k most relevant pixels that lie in the mask,
    |top_k(R) ∩ mask| / k, per example (B,); NaN for an empty mask.

    Ties at the k-th value are counted by their expected share (the mean over random
    tie-breaks): with t the k-th largest value, hits = |{R > t} ∩ mask| + (k − |{R > t}|) ·
    |{R = t} ∩ mask| / |{R = t}|. So a map equal to the mask scores 1 (for k ≤ |mask|) and a
    constant map scores |mask| / P, the chance level. Quantus's ``TopKIntersection`` breaks ties
    by NumPy's argsort order (k = 1000 by default); without ties the two agree. The score cannot
    exceed |mask| / k.

    Args:
        maps: (B, H, W) relevance (e.g. the signed channel sum).
        masks: (B, H, W) or (B, 1, H, W) boolean ground truth.
        k: pixels counted; None is 10 % of the pixels.
    """
    masks = _masks(maps, masks)
    flat, inside = maps.flatten(1).double(), masks.flatten(1)
    p = flat.shape[1]
    k = max(1, round(0.1 * p)) if k is None else k
    if isinstance(k, bool) or int(k) != k or not 1 <= k <= p:
        raise ValueError(f"k must be an integer in [1, {p}] (pixels per map), got {k!r}")
    threshold = flat.topk(int(k), dim=1).values[:, -1:]  # (B, 1) the k-th largest value
    above, tied = flat > threshold, flat == threshold
    hits = (above & inside).sum(dim=1).double()
    share_tied = (tied & inside).sum(dim=1).double() / tied.sum(dim=1).double()
    hits = hits + (int(k) - above.sum(dim=1).double()) * share_tied
    return _nan_where(~inside.any(dim=1), (hits / int(k)).float())


def mask_auc(maps: Tensor, masks: Tensor) -> Tensor:
    """Area under the ROC curve of the map as a pixel classifier of the mask (Fawcett, "An
    introduction to ROC analysis", Pattern Recognition Letters 2006), per example (B,):

        AUC = P(R_i > R_o) + ½ P(R_i = R_o),  i inside, o outside the mask,

    computed exactly from average ranks (the Mann–Whitney statistic): (Σ_{i∈mask} rank_i −
    n⁺(n⁺+1)/2) / (n⁺ n⁻). Ties count half, as the trapezoid area of scikit-learn's
    ``roc_curve`` (Quantus's ``AUC``), so a constant map scores 0.5 and a map equal to the mask
    1. NaN for an empty or a full mask (no negatives), where Quantus returns NaN or warns.

    Args:
        maps: (B, H, W) relevance.
        masks: (B, H, W) or (B, 1, H, W) boolean ground truth.
    """
    masks = _masks(maps, masks)
    inside = masks.flatten(1)
    ranks = average_ranks(maps.flatten(1).double())  # (B, P) 1-based, ties averaged
    positives = inside.sum(dim=1).double()
    negatives = inside.shape[1] - positives
    u = (ranks * inside).sum(dim=1) - positives * (positives + 1) / 2
    score = (u / (positives * negatives).clamp_min(1)).float()
    return _nan_where((positives == 0) | (negatives == 0), score)


def focus(maps: Tensor, quadrants: Tensor) -> Tensor:
    """Focus (Arias-Duart, Parés, Garcia-Gasulla & Giménez-Ábalos, "Focus! Rating XAI Methods
    and Finding Biases", FUZZ-IEEE 2022) on 2 × 2 mosaics (:func:`common.mosaics.build_mosaics`):
    the share of the positive relevance that falls on the quadrants holding the target class,

        Focus = Σ_{target quadrants} R⁺ / Σ R⁺,

    per mosaic (B,). 1 when all relevance is on the target quadrants; with two of four target
    tiles, a uniform map scores 0.5. NaN where there is no positive relevance or no target
    quadrant (Quantus's ``Focus`` returns 0 for the former, dividing by Σ R⁺ + 1e-9).

    Args:
        maps: (B, H, W) relevance of the mosaics (e.g. the signed channel sum), H and W even.
        quadrants: (B, 4) bool, target class in quadrant 0 top-left, 1 top-right,
            2 bottom-left, 3 bottom-right.
    """
    if maps.dim() != 3 or maps.shape[1] % 2 or maps.shape[2] % 2:
        raise ValueError(f"maps must be (B, H, W) with H and W even (2 × 2 mosaics), got {tuple(maps.shape)}")
    if quadrants.shape != (maps.shape[0], 4):
        raise ValueError(f"quadrants must be (B, 4) like the maps' batch, got shape {tuple(quadrants.shape)}")
    b, h, w = maps.shape
    positive = maps.clamp(min=0).double().view(b, 2, h // 2, 2, w // 2)
    per_quadrant = positive.sum(dim=(2, 4)).flatten(1)  # (B, 4) in order tl, tr, bl, br
    total = per_quadrant.sum(dim=1)
    score = ((per_quadrant * quadrants.bool()).sum(dim=1) / total.clamp_min(1e-300)).float()
    return _nan_where((total <= 0) | ~quadrants.bool().any(dim=1), score)
