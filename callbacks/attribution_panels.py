"""Attribution panels: what the explanations of a few probe examples look like as training goes.

One strip per example and method, left to right:

    x | Φ(x) | ground-truth mask (when the dataset has one) | x' | Φ(x')

where Φ(x) is the attribution heat map (Σ_c |Φ_c|, scaled per map to its 99th percentile and
coloured with a matplotlib colormap), and x' the perturbed input of the monitor's robustness
metric (the same x' the metric scored, see :class:`callbacks.ExplanationMonitor`).

The panels are drawn by :class:`callbacks.ExplanationMonitor` (its ``panels`` option), not by a
callback of their own: they show the Φ(x) and the per-example scores the monitor has just
computed, on the same probe set and cadence, so a separate callback would either compute them a
second time or reach into the monitor. This module only renders: tensors in, uint8 arrays and
PNG files out, with a colour lookup table and nearest-neighbour upscaling (no figure, no pyplot),
which keeps a panel of eight 28 × 28 examples to a few milliseconds.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from attributions import pixel_map

TILE_NAMES: tuple[str, ...] = ("x", "attr(x)", "mask", "x'", "attr(x')")
GAP = 2  # white pixels between tiles and rows
TARGET_TILE = 96  # tiles are upscaled by an integer factor towards this many pixels


@dataclass
class PanelRows:
    """The examples of one method's panel, on the CPU.

    Attributes:
        x: (K, C, H, W) inputs in [0, 1].
        attribution: (K, C, H, W) Φ(x).
        perturbed: (K, C, H, W) x'.
        perturbed_attribution: (K, C, H, W) Φ(x').
        mask: (K, 1, H, W) bool ground-truth masks, or None.
    """

    x: Tensor
    attribution: Tensor
    perturbed: Tensor
    perturbed_attribution: Tensor
    mask: Tensor | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])


@functools.lru_cache(maxsize=8)
def _lookup_table(colormap: str) -> Tensor:
    from matplotlib import colormaps  # imported on first use: matplotlib's import is not free

    return torch.from_numpy(colormaps[colormap](np.linspace(0.0, 1.0, 256))[:, :3]).float()  # (256, 3)


def check_colormap(colormap: str) -> None:
    """Raise a ValueError naming ``colormap`` unless matplotlib knows it."""
    from matplotlib import colormaps

    if colormap not in colormaps:
        raise ValueError(f"colormap must be a matplotlib colormap name (e.g. 'inferno', 'viridis'), got {colormap!r}")


def rgb(images: Tensor) -> Tensor:
    """(K, C, H, W) images in [0, 1], C = 1 or 3 -> (K, H, W, 3) float RGB."""
    images = images.detach().float().clamp(0.0, 1.0)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return images[:, :3].permute(0, 2, 3, 1)


def heat(attribution: Tensor, colormap: str = "inferno") -> Tensor:
    """Colour Σ_c |Φ_c| per example: (K, C, H, W) -> (K, H, W, 3) float RGB.

    Each map is divided by its own 99th percentile (so one extreme pixel does not wash the map
    out, and the ranking the robustness metrics compare is what is seen), clipped to [0, 1].
    """
    maps = pixel_map(attribution.detach().float())  # (K, H, W)
    scale = torch.quantile(maps.flatten(1), 0.99, dim=1).clamp_min(1e-12)  # (K,)
    levels = (maps / scale.view(-1, 1, 1)).clamp(0.0, 1.0)
    index = (levels * 255).round().long()  # (K, H, W)
    return _lookup_table(colormap)[index]  # (K, H, W, 3)


def mask_overlay(images_rgb: Tensor, mask: Tensor) -> Tensor:
    """The image dimmed, with the mask's pixels tinted green: (K, H, W, 3), (K, 1, H, W) -> (K, H, W, 3)."""
    inside = mask[:, 0].unsqueeze(-1).float()  # (K, H, W, 1)
    green = torch.tensor([0.1, 0.9, 0.2])
    return 0.35 * images_rgb + 0.65 * inside * green


def _upscale(tiles: Tensor, factor: int) -> Tensor:
    """Nearest-neighbour upscaling of (K, H, W, 3) by an integer factor."""
    return tiles.repeat_interleave(factor, dim=1).repeat_interleave(factor, dim=2)


def strips(rows: PanelRows, colormap: str = "inferno") -> list[np.ndarray]:
    """One uint8 RGB strip (h, w, 3) per example: x | Φ(x) | [mask] | x' | Φ(x')."""
    x_rgb = rgb(rows.x)
    tiles = [x_rgb, heat(rows.attribution, colormap)]
    if rows.mask is not None:
        tiles.append(mask_overlay(x_rgb, rows.mask.cpu()))
    tiles += [rgb(rows.perturbed), heat(rows.perturbed_attribution, colormap)]
    height, width = x_rgb.shape[1:3]
    factor = max(1, TARGET_TILE // max(height, width))
    scaled = [_upscale(t, factor) for t in tiles]  # each (K, h, w, 3)
    gap = torch.ones(len(rows), height * factor, GAP, 3)
    joined = [scaled[0]]
    for tile in scaled[1:]:
        joined += [gap, tile]
    strip = torch.cat(joined, dim=2)  # (K, h, W_total, 3)
    return list((strip * 255).round().to(torch.uint8).numpy())


def tile_names(with_mask: bool) -> tuple[str, ...]:
    """The tile names of a strip, left to right."""
    return TILE_NAMES if with_mask else tuple(n for n in TILE_NAMES if n != "mask")


def grid(example_strips: list[np.ndarray], names: tuple[str, ...]) -> np.ndarray:
    """Stack strips into one image (rows: examples) under a header naming the tiles."""
    height, width = example_strips[0].shape[:2]
    header = 14
    total = header + len(example_strips) * (height + GAP)
    canvas = np.full((total, width, 3), 255, dtype=np.uint8)
    for i, strip in enumerate(example_strips):
        top = header + i * (height + GAP)
        canvas[top : top + height] = strip
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    tile_width = (width - GAP * (len(names) - 1)) // len(names)
    for j, name in enumerate(names):
        draw.text((j * (tile_width + GAP) + 2, 1), name, fill=(0, 0, 0))
    return np.asarray(image)


def save_png(array: np.ndarray, path: Path) -> None:
    """Write a uint8 RGB array as a PNG file (the folder is created)."""
    os.makedirs(path.parent, exist_ok=True)
    Image.fromarray(array).save(path)
