"""A split of an image set as a torch Dataset, with the standard augmentation as tensor ops.

Images are kept as uint8 (C, H, W) tensors (in memory, or decoded from files on access) and
turned into float [0, 1] only when an item is read (arrays stored as floats in [0, 1] stay so), so a 50k-image set of 32×32 colour images
costs 150 MB, not 600 MB. Augmentation is done on the tensor (no PIL round trip per item).
"""

from __future__ import annotations

from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

PaddingMode = Literal["constant", "reflect"]
PADDING_MODES: tuple[str, ...] = ("constant", "reflect")


class ImageSource(Protocol):
    """Indexable images: ``source[i]`` is a uint8 (C, H, W) tensor (or a floating-point one with
    values in [0, 1], checked when loaded: :mod:`datamodules.integrity`)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Tensor: ...


class RandomCropFlip:
    """Random crop after padding, then a random horizontal flip, on one (C, H, W) image.

    The standard augmentation of CIFAR-10 adversarial training (Madry et al. 2018; Rice, Wong &
    Kolter 2020): pad every side by ``padding`` pixels, cut a random H×W window, flip left-right
    with probability 1/2. Randomness comes from torch's global generator, which Lightning and
    the DataLoader seed per worker.

    Args:
        padding: pixels added on every side before cropping (0: no crop).
        padding_mode: "constant" (zeros, as torchvision's RandomCrop) or "reflect" (as Rice et
            al.'s code).
        horizontal_flip: flip left-right with probability 1/2 (off for digits).
    """

    def __init__(self, padding: int = 4, padding_mode: PaddingMode = "constant", horizontal_flip: bool = True) -> None:
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        self.padding = padding
        self.padding_mode = padding_mode
        self.horizontal_flip = horizontal_flip

    def __call__(self, x: Tensor) -> Tensor:
        _, h, w = x.shape
        p = self.padding
        if p > 0:
            padded = F.pad(x, (p, p, p, p), mode=self.padding_mode)  # (C, H + 2p, W + 2p)
            top, left = torch.randint(0, 2 * p + 1, (2,)).tolist()
            x = padded[:, top : top + h, left : left + w]
        if self.horizontal_flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x

    def __repr__(self) -> str:
        return (
            f"RandomCropFlip(padding={self.padding}, padding_mode={self.padding_mode!r}, "
            f"horizontal_flip={self.horizontal_flip})"
        )


class ImageSplit(Dataset):
    """The examples ``indices`` of ``source``; items are ``(x, y)`` with x float in [0, 1].

    Args:
        source: images, ``source[i]`` a uint8 (C, H, W) tensor.
        labels: (N,) int64 labels of every image of ``source``.
        indices: (M,) positions in ``source`` that make up this split.
        augment: applied to each float image when given (training split only).
    """

    def __init__(self, source: ImageSource, labels: Tensor, indices: Tensor, augment: RandomCropFlip | None = None):
        self.source = source
        self.labels = labels
        self.indices = indices
        self.augment = augment

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        i = int(self.indices[index])
        image = self.source[i]
        # (C, H, W) in [0, 1]: uint8 divided by 255, floating point (checked at load) copied
        x = image.float().div_(255.0) if image.dtype == torch.uint8 else image.to(torch.float32, copy=True)
        if self.augment is not None:
            x = self.augment(x)
        return x, self.labels[i]


def split_indices(n: int, holdout: int, seed: int) -> tuple[Tensor, Tensor]:
    """Split ``range(n)`` into (rest, held out) by a permutation seeded with ``seed``.

    Both parts come back sorted; the same ``n``, ``holdout`` and ``seed`` give the same split,
    whatever else has used the global RNG.
    """
    if not 0 <= holdout < n:
        raise ValueError(f"holdout must be in [0, {n - 1}], got {holdout}")
    permutation = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return permutation[holdout:].sort().values, permutation[:holdout].sort().values


def resolve_size(size: int | float, n: int, name: str) -> int:
    """A split size given as a count (int) or a fraction of ``n`` (float in (0, 1)), as a count."""
    if isinstance(size, float):
        count = round(size * n)
    else:
        count = int(size)
    if not 1 <= count < n:
        raise ValueError(f"{name} must leave at least one example on each side of the split of {n}, got {size!r}")
    return count
