"""2 × 2 mosaics for the focus metric (Arias-Duart, Parés, Garcia-Gasulla & Giménez-Ábalos,
"Focus! Rating XAI Methods and Finding Biases", FUZZ-IEEE 2022).

A mosaic tiles four images of equal size: two of a target class and two of other classes, at
random positions. A model that classifies the mosaic as the target class should, if the
explanation is faithful to it, put its relevance on the two target quadrants.

Quadrants are numbered 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right (as Quantus's
``Focus``). Mosaic m is drawn from the key (seed, m) alone (:func:`common.example_noise`,
stream 44): asking for more mosaics adds new ones and leaves the first ones as they were.
At full resolution a mosaic is 2H × 2W and the model must accept that (global pooling); with
``half_size`` every tile is first average-pooled 2 × 2, so the mosaic has the images' own size
and any model trained on them can classify it.

:func:`build_mosaics` draws M mosaics from a labelled set; :func:`mosaics_around` builds one
mosaic around each image of a batch (the image is one of its two target tiles), for scoring a
batch per example: its partners come from the same batch, so the score of an example depends
on the batch it sits in, not only on the example.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from common.example_noise import example_ids, example_noise

_MOSAIC_STREAM = 44
_ANCHORED_STREAM = 45
TARGET_TILES = 2


@dataclass
class Mosaics:
    """Mosaics (M, C, 2H, 2W), or (M, C, H, W) from half-size tiles, their target classes (M,),
    which quadrants hold the target class (M, 4) bool, the source image of each quadrant (M, 4),
    the target objects' masks (M, 1, ·, ·) when the source masks were given, and which mosaics
    could be built (M,) bool (:func:`mosaics_around`: an image without a partner of its class or
    without two images of other classes gets a placeholder mosaic of itself, marked False)."""

    images: Tensor
    labels: Tensor
    quadrants: Tensor
    sources: Tensor
    masks: Tensor | None = None
    defined: Tensor | None = None


def tile(tiles: Tensor) -> Tensor:
    """Four tiles (M, 4, ...) in quadrant order → (M, ..., 2H, 2W)."""
    top = torch.cat([tiles[:, 0], tiles[:, 1]], dim=-1)
    bottom = torch.cat([tiles[:, 2], tiles[:, 3]], dim=-1)
    return torch.cat([top, bottom], dim=-2)


def _assemble(
    images: Tensor, index: Tensor, flags: Tensor, masks: Tensor | None, half_size: bool
) -> tuple[Tensor, Tensor | None]:
    """Mosaic images (and target masks) from source indices (M, 4) and target flags (M, 4)."""
    tiles = images[index]  # (M, 4, C, H, W)
    if half_size:
        m, _, c, h, w = tiles.shape
        if h % 2 or w % 2:
            raise ValueError(f"half_size mosaics need even image sides, got {h} × {w}")
        tiles = F.avg_pool2d(tiles.flatten(0, 1), 2).view(m, 4, c, h // 2, w // 2)
    mosaic_masks = None
    if masks is not None:
        chosen = masks[index] & flags.view(*flags.shape, 1, 1, 1)  # (M, 4, 1, H, W)
        if half_size:
            m, _, _, h, w = chosen.shape
            chosen = (F.avg_pool2d(chosen.flatten(0, 1).float(), 2) >= 0.5).view(m, 4, 1, h // 2, w // 2)
        mosaic_masks = tile(chosen)
    return tile(tiles), mosaic_masks


def _check(images: Tensor, labels: Tensor, masks: Tensor | None) -> Tensor | None:
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must be (N,) with N = {images.shape[0]}, got shape {tuple(labels.shape)}")
    if masks is not None:
        masks = masks[:, None] if masks.dim() == 3 else masks
        if masks.shape != (images.shape[0], 1, *images.shape[2:]):
            raise ValueError(f"masks must be (N, 1, H, W) like the images, got shape {tuple(masks.shape)}")
        masks = masks.bool()
    return masks


def _pick(u: Tensor, count: int) -> int:
    """An index in [0, count) from a uniform u in [0, 1)."""
    return min(int(u * count), count - 1)


def build_mosaics(
    images: Tensor,
    labels: Tensor,
    n_mosaics: int,
    seed: int = 0,
    masks: Tensor | None = None,
    half_size: bool = False,
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
        half_size: tiles average-pooled 2 × 2, so the mosaic is H × W.
    """
    masks = _check(images, labels, masks)
    if isinstance(n_mosaics, bool) or int(n_mosaics) != n_mosaics or n_mosaics < 1:
        raise ValueError(f"n_mosaics must be an integer >= 1, got {n_mosaics!r}")
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
    mosaic_images, mosaic_masks = _assemble(images, index, flags, masks, half_size)
    return Mosaics(mosaic_images, torch.tensor(targets, device=images.device), flags, index, mosaic_masks)


def mosaics_around(
    images: Tensor,
    labels: Tensor,
    seed: int = 0,
    ids: Tensor | None = None,
    masks: Tensor | None = None,
    half_size: bool = False,
) -> Mosaics:
    """One mosaic per image i: i and another image of its class as the target tiles, two
    distinct images of other classes, in a random order; the draws of mosaic i follow
    (seed, ids[i]) (stream 45) and pick among the batch's images.

    Args:
        images: (N, C, H, W) images.
        labels: (N,) classes (the targets of the mosaics).
        seed: seed of the draws.
        ids: (N,) example identities (None: positions).
        masks: optional object masks, as :func:`build_mosaics`.
        half_size: tiles average-pooled 2 × 2, so the mosaic is H × W.
    """
    masks = _check(images, labels, masks)
    labels_cpu = labels.long().cpu()
    draws = example_noise((7,), example_ids(len(labels_cpu), ids, torch.device("cpu")), seed, _ANCHORED_STREAM)
    sources, quadrants, defined = [], [], []
    for i, u in enumerate(draws):
        same = ((labels_cpu == labels_cpu[i]) & (torch.arange(len(labels_cpu)) != i)).nonzero().flatten()
        others = (labels_cpu != labels_cpu[i]).nonzero().flatten()
        if len(same) == 0 or len(others) < 2:
            sources.append(torch.full((4,), i))
            quadrants.append(torch.tensor([True, True, False, False]))
            defined.append(False)
            continue
        third = _pick(u[1], len(others))
        fourth = _pick(u[2], len(others) - 1)
        fourth += fourth >= third
        chosen = torch.stack([torch.tensor(i), same[_pick(u[0], len(same))], others[third], others[fourth]])
        order = u[3:].argsort()
        sources.append(chosen[order])
        quadrants.append(order < TARGET_TILES)
        defined.append(True)
    index = torch.stack(sources).to(images.device)
    flags = torch.stack(quadrants).to(images.device)
    mosaic_images, mosaic_masks = _assemble(images, index, flags, masks, half_size)
    return Mosaics(
        mosaic_images, labels.long().clone(), flags, index, mosaic_masks, torch.tensor(defined, device=images.device)
    )
