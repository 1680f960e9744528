"""Base of the datamodules of published datasets (MNIST, CIFAR, SVHN) read from ``data_dir``.

The files are expected in torchvision's layout, so a folder torchvision already downloaded into
works as it is. With ``download`` off (the default) nothing touches the network: ``__init__``
checks that the files are there and fails at once, naming every missing file, when they are
not. With ``download`` on, ``prepare_data`` asks torchvision to fetch what is missing (it checks
the publishers' MD5 sums) and cleans up after a failed download.

Reading does not go through torchvision's dataset classes: those verify MD5 sums of every file
on every start and decode items through PIL one at a time. The readers of
:mod:`datamodules.readers` load a whole split into a uint8 tensor once (checking headers, sizes
and label ranges instead), and items are sliced from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from datamodules.files import ExpectedFile, download_with_cleanup, find_file, missing_files, require_files
from datamodules.image_split import ImageSplit, PaddingMode, resolve_size, split_indices
from datamodules.split_base import SplitImageDataModule

Part = Literal["train", "test"]


class PublishedDataModule(SplitImageDataModule):
    """A published dataset with a training part (split into train and val) and a test part.

    Subclasses set the dataset facts and ``dataset_name``, implement :meth:`expected_files`,
    :meth:`download_writes`, :meth:`fetch`, :meth:`source` and :meth:`read_part`, and call
    :meth:`check_files` at the end of ``__init__``.

    Args:
        data_dir: the folder holding the files in torchvision's layout (``~`` is expanded).
        download: fetch missing files through torchvision in ``prepare_data``.
        val_size, seed, batch_size, eval_batch_size, num_workers, augment, crop_padding,
            padding_mode, horizontal_flip: see :class:`SplitImageDataModule`.
    """

    dataset_name: str = ""

    def __init__(
        self,
        data_dir: str,
        download: bool,
        val_size: int | float,
        seed: int,
        batch_size: int,
        eval_batch_size: int,
        num_workers: int,
        augment: bool,
        crop_padding: int,
        padding_mode: PaddingMode,
        horizontal_flip: bool,
    ) -> None:
        super().__init__(
            val_size, seed, batch_size, eval_batch_size, num_workers, augment, crop_padding, padding_mode,
            horizontal_flip,
        )  # fmt: skip
        self.data_dir = Path(data_dir).expanduser()
        self.download = download
        self._parts: dict[str, tuple[Tensor, Tensor]] = {}

    # What a subclass provides.
    def expected_files(self) -> list[ExpectedFile]:
        """The files the dataset needs, relative to ``data_dir``, with accepted alternatives."""
        raise NotImplementedError

    def download_writes(self) -> list[str]:
        """Top-level files and folders under ``data_dir`` that a download creates."""
        raise NotImplementedError

    def source(self) -> str:
        """Where the files are downloaded from, for messages."""
        raise NotImplementedError

    def fetch(self) -> None:
        """Download the files into ``data_dir`` through torchvision."""
        raise NotImplementedError

    def read_part(self, part: Part) -> tuple[Tensor, Tensor]:
        """(N, C, H, W) uint8 images and (N,) int64 labels of ``part`` ("train" or "test")."""
        raise NotImplementedError

    # Shared behaviour.
    def check_files(self) -> None:
        """With download off, fail now (before any model is built) if a file is missing."""
        if not self.download:
            require_files(
                self.dataset_name,
                self.data_dir,
                self.expected_files(),
                f"Set download: true to fetch them from {self.source()}, "
                "or point data_dir at the folder that holds them.",
            )

    def prepare_data(self) -> None:
        if self.download and missing_files(self.data_dir, self.expected_files()):
            download_with_cleanup(
                self.dataset_name,
                self.data_dir,
                self.expected_files(),
                self.download_writes(),
                self.fetch,
                self.source(),
            )

    def locate(self, alternatives: ExpectedFile) -> Path:
        """The path of an expected file under ``data_dir``."""
        path = find_file(self.data_dir, alternatives)
        if path is None:
            require_files(self.dataset_name, self.data_dir, [alternatives], "")
        return path  # type: ignore[return-value]

    def _part(self, part: Part) -> tuple[Tensor, Tensor]:
        if part not in self._parts:
            require_files(
                self.dataset_name,
                self.data_dir,
                self.expected_files(),
                "Run prepare_data() (the Trainer does) to download them, or put them there.",
            )
            self._parts[part] = self.read_part(part)
        return self._parts[part]

    def build_split(self, split: str) -> ImageSplit:
        if split == "test":
            images, labels = self._part("test")
            return ImageSplit(images, labels, torch.arange(labels.shape[0]))
        images, labels = self._part("train")
        n = int(labels.shape[0])
        train_indices, val_indices = split_indices(n, resolve_size(self.val_size, n, "val_size"), self.seed)
        if split == "train":
            return ImageSplit(images, labels, train_indices, self.train_augmentation)
        return ImageSplit(images, labels, val_indices)
