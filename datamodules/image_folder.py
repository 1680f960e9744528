"""A user's own images: one folder per class, resized to a fixed size, grey or colour.

Two layouts are accepted under ``data_dir``::

    data_dir/train/<class>/<image>, data_dir/test/<class>/<image> (and data_dir/val/<class>/...)
    data_dir/<class>/<image>

With split folders, ``train/`` names the classes; a missing ``val/`` (or ``test/``) is drawn
from ``train/`` by a seeded permutation (``val_size``, ``test_size``). Without them, all three
splits are drawn from the one pool. Classes are the sorted folder names, as in torchvision's
ImageFolder. Hidden files (``.DS_Store``) are skipped; any other file that is not an image, or
an image that cannot be opened or converted, stops the run with an error naming the file:
extensions and headers are checked when a split is built (``setup``, before training), and
decoding errors later name the file too.

Pixel values need no scan at setup: every image is decoded to 8 bits per channel, so its pixels
lie in [0, 1] once divided by 255 and are never NaN; the modes that hold more than 8 bits (16-bit
and floating-point grey) are refused from the header, which is read anyway. Labels are the class
folders' positions, in [0, num_classes) by construction. Decoding every file at setup would cost
as much as an epoch of loading, so decoding errors are left to the first read, which names the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from datamodules.image_split import ImageSplit, PaddingMode, resolve_size
from datamodules.split_base import SplitImageDataModule

ResizeMode = Literal["stretch", "crop"]
RESIZE_MODES: tuple[str, ...] = ("stretch", "crop")
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".tif", ".tiff", ".webp", ".gif"
)  # fmt: skip
# Modes whose values do not fit 8 bits: converting them would clip silently.
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_image(path: Path, size: tuple[int, int], channels: int, resize_mode: ResizeMode) -> Tensor:
    """The image at ``path`` as a uint8 (channels, H, W) tensor of ``size`` = (H, W).

    Raises:
        ValueError: naming ``path`` when the file is no image, is truncated or corrupted, or
            holds more than 8 bits per channel.
    """
    try:
        with Image.open(path) as image:
            if image.mode in _WIDE_MODES:
                raise ValueError(
                    f"mode {image.mode!r} holds more than 8 bits per channel; convert the file to 8-bit grey or RGB"
                )
            converted = image.convert("L" if channels == 1 else "RGB")
        height, width = size
        if converted.size != (width, height):
            if resize_mode == "crop":
                converted = ImageOps.fit(converted, (width, height), method=Image.Resampling.BILINEAR)
            else:
                converted = converted.resize((width, height), Image.Resampling.BILINEAR)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from error
    array = np.asarray(converted, dtype=np.uint8)  # (H, W) or (H, W, 3)
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1).contiguous()


class ImageFiles:
    """Images decoded from ``paths`` on access: ``source[i]`` is a uint8 (C, H, W) tensor."""

    def __init__(self, paths: Sequence[Path], size: tuple[int, int], channels: int, resize_mode: ResizeMode) -> None:
        self.paths = list(paths)
        self.size = size
        self.channels = channels
        self.resize_mode = resize_mode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Tensor:
        return load_image(self.paths[index], self.size, self.channels, self.resize_mode)


def class_folders(folder: Path) -> list[str]:
    """Sorted names of the visible subfolders of ``folder``."""
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith("."))


def list_images(folder: Path, class_names: Sequence[str]) -> tuple[list[Path], Tensor]:
    """Every image under ``folder/<class>/`` (recursively) with its label, checked by header.

    Raises:
        ValueError: naming the file, for a visible file that has no image extension, whose
            header is not an image's, or whose mode holds more than 8 bits per channel; naming
            the folder, for a class folder not in ``class_names``.
    """
    unknown = sorted(set(class_folders(folder)) - set(class_names))
    if unknown:
        raise ValueError(
            f"{folder} holds class folders {unknown} that the training folder does not have ({list(class_names)})"
        )
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        class_dir = folder / name
        if not class_dir.is_dir():
            continue
        for directory, subdirs, files in os.walk(class_dir, followlinks=True):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            for file_name in sorted(files):
                if file_name.startswith("."):
                    continue
                path = Path(directory) / file_name
                if path.suffix.lower() not in IMAGE_EXTENSIONS:
                    raise ValueError(
                        f"{path} is not an image file: class folders may hold only {', '.join(IMAGE_EXTENSIONS)} files"
                    )
                try:
                    with Image.open(path) as image:  # reads the header only
                        mode = image.mode
                except (OSError, SyntaxError, Image.DecompressionBombError) as error:
                    raise ValueError(f"cannot read image {path}: {error}") from error
                if mode in _WIDE_MODES:
                    raise ValueError(
                        f"cannot read image {path}: mode {mode!r} holds more than 8 bits per channel, which "
                        "converting to 8 bits would clip; convert the file to 8-bit grey or RGB"
                    )
                paths.append(path)
                labels.append(label)
    return paths, torch.tensor(labels, dtype=torch.int64)


class ImageFolder(SplitImageDataModule):
    """Classification images in class folders (see the module docstring for the layouts).

    Args:
        data_dir: the folder of class folders, or of ``train/`` (``val/``, ``test/``) folders.
        image_size: height and width every image is resized to (one int for a square).
        channels: 1 (converted to grey) or 3 (converted to RGB).
        resize_mode: "stretch" to the size, or "crop" (scale the shorter side, then cut the
            centre) to keep the aspect ratio.
        mean: per-channel mean of the model's normalisation layer (default: ImageNet's, or its
            grey average 0.449).
        std: per-channel standard deviation of the normalisation (default: ImageNet's, or 0.226).
        val_size: validation images drawn from the training pool when there is no ``val/``
            folder, as a count or a fraction.
        test_size: test images drawn from the training pool when there is no ``test/`` folder,
            as a count or a fraction.
        seed: seed of the permutation that draws validation and test images.
        batch_size: training batch size.
        eval_batch_size: validation/test batch size.
        num_workers: dataloader worker processes (decoding runs there).
        augment: random crop after padding and horizontal flips on the training split.
        crop_padding: pixels of padding before the random crop (default: an eighth of the size).
        padding_mode: "constant" (zeros) or "reflect".
        horizontal_flip: random left-right flips.
    """

    def __init__(
        self,
        data_dir: str,
        image_size: int | tuple[int, int] = 32,
        channels: int = 3,
        resize_mode: ResizeMode = "stretch",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        val_size: int | float = 0.1,
        test_size: int | float = 0.1,
        seed: int = 0,
        batch_size: int = 128,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        augment: bool = False,
        crop_padding: int | None = None,
        padding_mode: PaddingMode = "constant",
        horizontal_flip: bool = True,
    ) -> None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
        if len(size) != 2 or min(size) < 8:
            raise ValueError(f"image_size must be an int >= 8 or a pair (H, W) of them, got {image_size!r}")
        super().__init__(
            val_size,
            seed,
            batch_size,
            eval_batch_size,
            num_workers,
            augment,
            max(size) // 8 if crop_padding is None else crop_padding,
            padding_mode,
            horizontal_flip,
        )
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
        if isinstance(test_size, bool) or not (
            (isinstance(test_size, int) and test_size >= 1) or (isinstance(test_size, float) and 0.0 < test_size < 1.0)
        ):
            raise ValueError(f"test_size must be a count >= 1 or a fraction in (0, 1), got {test_size!r}")
        default_mean, default_std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.449,), (0.226,))
        mean = tuple(default_mean if mean is None else mean)
        std = tuple(default_std if std is None else std)
        if len(mean) != channels:
            raise ValueError(f"mean must have {channels} value(s), one per channel, got {list(mean)}")
        if len(std) != channels or any(s <= 0 for s in std):
            raise ValueError(f"std must have {channels} positive value(s), one per channel, got {list(std)}")
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"data_dir {str(root)!r} is not a folder of class folders (or of train/ and test/)")
        self.save_hyperparameters(logger=False)
        self.data_dir = root
        self.split_folders = {s: root / s for s in ("train", "val", "test") if (root / s).is_dir()}
        if self.split_folders and "train" not in self.split_folders:
            raise ValueError(f"data_dir {str(root)!r} has {sorted(self.split_folders)} folders but no train/ folder")
        self.pool = self.split_folders.get("train", root)
        names = class_folders(self.pool)
        if len(names) < 2:
            raise ValueError(f"data_dir {str(root)!r}: {self.pool} must hold at least 2 class folders, found {names}")
        self.image_size = size
        self.channels = channels
        self.resize_mode = resize_mode
        self.test_size = test_size
        self.num_classes = len(names)
        self.input_shape = (channels, size[0], size[1])
        self.mean = mean
        self.std = std
        self.class_names = names
        self._sources: dict[str, tuple[ImageFiles, Tensor, Tensor]] | None = None

    def _files(self, paths: Sequence[Path]) -> ImageFiles:
        return ImageFiles(paths, self.image_size, self.channels, self.resize_mode)  # type: ignore[arg-type]

    def _scan(self) -> dict[str, tuple[ImageFiles, Tensor, Tensor]]:
        """Per split: its image files, their labels, and the indices of the split among them."""
        if self._sources is not None:
            return self._sources
        paths, labels = list_images(self.pool, self.class_names)
        empty = [name for label, name in enumerate(self.class_names) if not (labels == label).any()]
        if empty:
            raise ValueError(f"class folders {empty} under {self.pool} hold no images")
        n = len(paths)
        carve = [s for s in ("test", "val") if s not in self.split_folders]
        counts = {s: resolve_size(self.test_size if s == "test" else self.val_size, n, f"{s}_size") for s in carve}
        if sum(counts.values()) >= n:
            raise ValueError(
                f"val_size and test_size take {sum(counts.values())} of the {n} images of {self.pool}; "
                "leave some for training"
            )
        permutation = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        pool = self._files(paths)
        sources: dict[str, tuple[ImageFiles, Tensor, Tensor]] = {}
        start = 0
        for split in carve:
            sources[split] = (pool, labels, permutation[start : start + counts[split]].sort().values)
            start += counts[split]
        sources["train"] = (pool, labels, permutation[start:].sort().values)
        for split in ("val", "test"):
            if split in self.split_folders:
                split_paths, split_labels = list_images(self.split_folders[split], self.class_names)
                if not split_paths:
                    raise ValueError(f"{self.split_folders[split]} holds no images")
                sources[split] = (self._files(split_paths), split_labels, torch.arange(len(split_paths)))
        self._sources = sources
        return sources

    def build_split(self, split: str) -> ImageSplit:
        files, labels, indices = self._scan()[split]
        return ImageSplit(files, labels, indices, self.train_augmentation if split == "train" else None)
