"""2 × 2 mosaics for the focus metric (Arias-Duart, Parés, Garcia-Gasulla & Giménez-Ábalos,
"Focus! Rating XAI Methods and Finding Biases", FUZZ-IEEE 2022).

A mosaic tiles four images of equal size: two of a target class and two of other classes, at
random positions. A model that classifies the mosaic as the target class should, if the
explanation is faithful to it, put its relevance on the two target quadrants.

Quadrants are numbered 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right (as Quantus's
``Focus``). Mosaic m is drawn from the key (seed, m) alone (:func:`common.example_noise`,
stream 44): asking for more mosaics adds new ones and leaves the first ones as they were.
The model must accept inputs of twice the height and width (global pooling, or a model trained
on mosaics).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from common.example_noise import example_noise

_MOSAIC_STREAM = 44
TARGET_TILES = 2


@dataclass
class Mosaics:
    """Mosaics (M, C, 2H, 2W), their target classes (M,), which quadrants hold the target class
    (M, 4) bool, the source image of each quadrant (M, 4), and the target objects' masks
    (M, 1, 2H, 2W) when the source masks were given."""

    images: Tensor
    labels: Tensor
    quadrants: Tensor
    sources: Tensor
    masks: Tensor | None = None


def tile(tiles: Tensor) -> Tensor:
    """Four tiles (M, 4, ...) in quadrant order → (M, ..., 2H, 2W)."""
    top = torch.cat([tiles[:, 0], tiles[:, 1]], dim=-1)
    bottom = torch.cat([tiles[:, 2], tiles[:, 3]], dim=-1)
    return torch.cat([top, bottom], dim=-2)


def _pick(u: Tensor, count: int) -> int:
    """An index in [0, count) from a uniform u in [0, 1)."""
    return min(int(u * count), count - 1)


def build_mosaics(
    images: Tensor, labels: Tensor, n_mosaics: int, seed: int = 0, masks: Tensor | None = None
) -> Mosaics:
    """Mosaics of two images of a random target class and two of other classes.

    Per mosaic: the target class is uniform over the classes with at least two images, its two
    images are distinct and uniform within the class, the two others are distinct and uniform
    over the images of every other class, and the four are placed in a uniformly random order.

    Args:
        images: (N, C, H, W) images.
        labels: (N,) integer classes.
        n_mosaics: M.
        seed: seed of the draws.
        masks: optional (N, 1, H, W) or (N, H, W) object masks; the mosaics' masks keep those of
            the target-class tiles only.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must be (N,) with N = {images.shape[0]}, got shape {tuple(labels.shape)}")
    if isinstance(n_mosaics, bool) or int(n_mosaics) != n_mosaics or n_mosaics < 1:
        raise ValueError(f"n_mosaics must be an integer >= 1, got {n_mosaics!r}")
    if masks is not None:
        masks = masks[:, None] if masks.dim() == 3 else masks
        if masks.shape != (images.shape[0], 1, *images.shape[2:]):
            raise ValueError(f"masks must be (N, 1, H, W) like the images, got shape {tuple(masks.shape)}")
    labels = labels.long().cpu()
    members = {int(c): (labels == c).nonzero().flatten() for c in labels.unique()}
    eligible = [c for c, idx in members.items() if len(idx) >= TARGET_TILES and len(labels) - len(idx) >= 4 - TARGET_TILES]
    if not eligible:
        raise ValueError("images must hold a class with at least 2 images and at least 2 images of other classes")
    draws = example_noise((9,), torch.arange(int(n_mosaics)), seed, _MOSAIC_STREAM)  # (M, 9)
    sources, quadrants, targets = [], [], []
    for u in draws:
        target = eligible[_pick(u[0], len(eligible))]
        same, others = members[target], (labels != target).nonzero().flatten()
        first = _pick(u[1], len(same))
        second = _pick(u[2], len(same) - 1)
        second += second >= first
        third = _pick(u[3], len(others))
        fourth = _pick(u[4], len(others) - 1)
        fourth += fourth >= third
        chosen = torch.stack([same[first], same[second], others[third], others[fourth]])
        order = u[5:].argsort()  # quadrant q shows chosen[order[q]]
        sources.append(chosen[order])
        quadrants.append(order < TARGET_TILES)
        targets.append(target)
    index = torch.stack(sources).to(images.device)  # (M, 4)
    flags = torch.stack(quadrants).to(images.device)
    mosaic_masks = None
    if masks is not None:
        mosaic_masks = tile(masks[index] & flags.view(*flags.shape, 1, 1, 1))
    return Mosaics(tile(images[index]), torch.tensor(targets, device=images.device), flags, index, mosaic_masks)
