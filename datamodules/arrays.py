"""Images and labels stored as NumPy arrays in ``.npz`` files.

The form in which the field passes around preprocessed and generated training sets: the
generated CIFAR-10 images of Wang et al. (ICML 2023, "Better diffusion models further improve
adversarial training") and Gowal et al. (NeurIPS 2021) are ``.npz`` files with an ``image`` array
(N, 32, 32, 3) uint8 and a ``label`` array (N,). Such a file holds::

    image   (N, H, W), (N, H, W, C) or (N, C, H, W); uint8 (0..255) or floating point in [0, 1]
    label   (N,) integers in [0, num_classes)

(other names through ``image_key`` and ``label_key``). Files are read with
``numpy.load(allow_pickle=False)``: arrays only, never code. The shapes are read from the
arrays' headers in ``__init__`` (the model is sized before any data is loaded); the values are
loaded and checked when a split is first built (``setup``, before training): every pixel finite
and in [0, 1], every label in [0, num_classes), with the file and the first bad example's index
named (:mod:`datamodules.integrity`).
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from datamodules.image_split import ImageSplit, PaddingMode, resolve_size, split_indices
from datamodules.integrity import check_labels, check_pixels
from datamodules.split_base import SplitImageDataModule

Layout = Literal["auto", "nchw", "nhwc"]
LAYOUTS: tuple[str, ...] = ("auto", "nchw", "nhwc")


def array_header(path: Path, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the array ``key`` in the ``.npz`` file ``path``, read from its header."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [name[: -len(".npy")] for name in archive.namelist() if name.endswith(".npy")]
            if key not in names:
                raise ValueError(f"{path} has no array {key!r}; it holds {sorted(names)}")
            with archive.open(f"{key}.npy") as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                else:  # a newer header format: read the array itself
                    array = np.load(path, allow_pickle=False)[key]
                    shape, dtype = array.shape, array.dtype
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"cannot read {path} as a NumPy .npz archive: {error}") from error
    return tuple(int(s) for s in shape), np.dtype(dtype)


def image_shape(shape: tuple[int, ...], layout: Layout, path: Path) -> tuple[tuple[int, int, int], bool]:
    """(C, H, W) of one image of an array of ``shape``, and whether it is stored channels-last."""
    if len(shape) == 3:
        return (1, shape[1], shape[2]), False
    if len(shape) != 4:
        raise ValueError(f"{path}: images must have shape (N, H, W), (N, H, W, C) or (N, C, H, W), got {shape}")
    first, last = shape[1] in (1, 3), shape[3] in (1, 3)
    if layout == "auto":
        if first == last:
            raise ValueError(f"{path}: cannot tell channels-first from channels-last in shape {shape}; set layout")
        layout = "nhwc" if last else "nchw"
    if layout == "nhwc":
        return (shape[3], shape[1], shape[2]), True
    return (shape[1], shape[2], shape[3]), False


class ArrayFile(SplitImageDataModule):
    """Images and labels from ``.npz`` files (see the module docstring).

    Args:
        train_file: the training images; validation (and, without ``test_file``, test) images
            are drawn from them by a seeded permutation.
        num_classes: the number of classes; labels must lie in [0, num_classes).
        test_file: the test images, or None to draw ``test_size`` of them from ``train_file``.
        image_key: the name of the images' array.
        label_key: the name of the labels' array.
        layout: "nhwc", "nchw", or "auto" (from which axis has 1 or 3 entries).
        class_names: one name per class (default: "0", "1", ...).
        mean: per-channel mean of the model's normalisation layer (default 0.5).
        std: per-channel standard deviation of the normalisation (default 0.25).
        val_size: validation images drawn from ``train_file``, as a count or a fraction.
        test_size: test images drawn from ``train_file`` when there is no ``test_file``.
        seed: seed of the permutation that draws validation and test images.
        batch_size, eval_batch_size, num_workers, augment, crop_padding, padding_mode,
            horizontal_flip: see :class:`SplitImageDataModule`.
    """

    def __init__(
        self,
        train_file: str,
        num_classes: int,
        test_file: str | None = None,
        image_key: str = "image",
        label_key: str = "label",
        layout: Layout = "auto",
        class_names: Sequence[str] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        val_size: int | float = 0.1,
        test_size: int | float = 0.1,
        seed: int = 0,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        augment: bool = False,
        crop_padding: int = 4,
        padding_mode: PaddingMode = "constant",
        horizontal_flip: bool = True,
    ) -> None:
        super().__init__(
            val_size, seed, batch_size, eval_batch_size, num_workers, augment, crop_padding, padding_mode,
            horizontal_flip,
        )  # fmt: skip
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if isinstance(test_size, bool) or not (
            (isinstance(test_size, int) and test_size >= 1) or (isinstance(test_size, float) and 0.0 < test_size < 1.0)
        ):
            raise ValueError(f"test_size must be a count >= 1 or a fraction in (0, 1), got {test_size!r}")
        self.files = {"train": Path(train_file).expanduser()}
        if test_file is not None:
            self.files["test"] = Path(test_file).expanduser()
        for part, path in self.files.items():
            if not path.is_file():
                raise FileNotFoundError(f"{part}_file {str(path)!r} does not exist")
        shapes = {}
        for part, path in self.files.items():
            shape, _ = array_header(path, image_key)
            label_shape, _ = array_header(path, label_key)
            if len(label_shape) != 1 or label_shape[0] != shape[0]:
                raise ValueError(f"{path}: {label_key!r} must have shape ({shape[0]},), one label per image, got {label_shape}")
            shapes[part] = image_shape(shape, layout, path)
        if "test" in shapes and shapes["test"][0] != shapes["train"][0]:
            raise ValueError(f"test_file images are {shapes['test'][0]}, train_file images {shapes['train'][0]}")
        channels = shapes["train"][0][0]
        mean = tuple((0.5,) * channels if mean is None else mean)
        std = tuple((0.25,) * channels if std is None else std)
        if len(mean) != channels:
            raise ValueError(f"mean must have {channels} value(s), one per channel, got {list(mean)}")
        if len(std) != channels or any(s <= 0 for s in std):
            raise ValueError(f"std must have {channels} positive value(s), one per channel, got {list(std)}")
        names = [str(i) for i in range(num_classes)] if class_names is None else [str(n) for n in class_names]
        if len(names) != num_classes:
            raise ValueError(f"class_names must have num_classes ({num_classes}) names, got {len(names)}")
        self.save_hyperparameters(logger=False)
        self.image_key, self.label_key = image_key, label_key
        self.channels_last = {part: last for part, (_, last) in shapes.items()}
        self.test_size = test_size
        self.num_classes = num_classes
        self.input_shape = shapes["train"][0]
        self.mean, self.std = mean, std
        self.class_names = names
        self._parts: dict[str, tuple[Tensor, Tensor]] = {}

    def read_part(self, part: str) -> tuple[Tensor, Tensor]:
        """(N, C, H, W) images (uint8, or float32 in [0, 1]) and (N,) int64 labels of ``part``, checked."""
        if part not in self._parts:
            path = self.files[part]
            try:
                with np.load(path, allow_pickle=False) as archive:
                    images, labels = archive[self.image_key], archive[self.label_key]
            except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
                raise ValueError(f"cannot read {path}: {error}") from error
            if images.ndim == 3:
                images = images[:, None]
            elif self.channels_last[part]:
                images = images.transpose(0, 3, 1, 2)
            tensor = torch.from_numpy(np.ascontiguousarray(images))
            if tensor.is_floating_point():
                tensor = tensor.float()
            check_pixels(tensor, path)
            if not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(f"{path}: {self.label_key!r} must hold integers, got {labels.dtype}")
            self._parts[part] = (tensor, check_labels(torch.from_numpy(labels.astype(np.int64)), self.num_classes, path))
        return self._parts[part]

    def build_split(self, split: str) -> ImageSplit:
        images, labels = self.read_part("train")
        n = int(labels.shape[0])
        if "test" in self.files:
            if split == "test":
                test_images, test_labels = self.read_part("test")
                return ImageSplit(test_images, test_labels, torch.arange(test_labels.shape[0]))
            pool, test = torch.arange(n), torch.empty(0, dtype=torch.int64)
        else:
            pool, test = split_indices(n, resolve_size(self.test_size, n, "test_size"), self.seed + 1)
            if split == "test":
                return ImageSplit(images, labels, test)
        rest, val = split_indices(pool.numel(), resolve_size(self.val_size, pool.numel(), "val_size"), self.seed)
        if split == "val":
            return ImageSplit(images, labels, pool[val])
        return ImageSplit(images, labels, pool[rest], self.train_augmentation)
