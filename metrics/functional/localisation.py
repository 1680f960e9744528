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

Relevance R is the signed channel sum Σ_c Φ_c for the first three (as Arras et al.) and the
absolute mass for the spurious share.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

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
