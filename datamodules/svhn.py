"""SVHN, cropped digits (Netzer et al. 2011): 3×32×32 colour images of house-number digits,
73 257 for training (plus 531 131 "extra" ones, easier) and 26 032 for testing.

Files, in torchvision's layout (directly under ``data_dir``)::

    train_32x32.mat   test_32x32.mat   (extra_32x32.mat with use_extra)
"""

from __future__ import annotations

import torch
from torch import Tensor

from datamodules.files import ExpectedFile
from datamodules.image_split import PaddingMode
from datamodules.published import Part, PublishedDataModule
from datamodules.readers import read_svhn_mat

_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}


class SVHN(PublishedDataModule):
    """SVHN digits, 3×32×32, classes "0" to "9" (torchvision's convention: the file's label 10
    is the digit 0).

    Args:
        data_dir: folder holding ``train_32x32.mat`` and ``test_32x32.mat`` (``~`` is expanded).
        download: fetch missing files through torchvision in ``prepare_data``; off by default,
            so that a wrong ``data_dir`` fails at once instead of downloading.
        use_extra: add the 531 131 "extra" images to the training part (2.2 GB in memory as
            uint8); validation is then drawn from the union.
        val_size: training images held out for validation, as a count or a fraction; drawn by a
            permutation seeded with ``seed``.
        seed: seed of the train/validation split (independent of the training seed).
        batch_size: training batch size.
        eval_batch_size: validation/test batch size.
        num_workers: dataloader worker processes.
        augment: random crop after padding on the training split.
        crop_padding: pixels of padding before the random crop.
        padding_mode: "constant" (zeros) or "reflect".
        horizontal_flip: random left-right flips; off, since flipping changes digits.
    """

    dataset_name = "SVHN"

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = False,
        use_extra: bool = False,
        val_size: int | float = 1000,
        seed: int = 0,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        augment: bool = True,
        crop_padding: int = 4,
        padding_mode: PaddingMode = "constant",
        horizontal_flip: bool = False,
    ) -> None:
        super().__init__(
            data_dir,
            download,
            val_size,
            seed,
            batch_size,
            eval_batch_size,
            num_workers,
            augment,
            crop_padding,
            padding_mode,
            horizontal_flip,
        )
        self.save_hyperparameters(logger=False)
        self.use_extra = use_extra
        self.num_classes = 10
        self.input_shape = (3, 32, 32)
        self.mean = (0.4377, 0.4438, 0.4728)
        self.std = (0.1980, 0.2010, 0.1970)
        self.class_names = [str(digit) for digit in range(10)]
        self.check_files()

    def _file_names(self) -> list[str]:
        return ["train", "test"] + (["extra"] if self.use_extra else [])

    def expected_files(self) -> list[ExpectedFile]:
        return [(_FILES[name],) for name in self._file_names()]

    def download_writes(self) -> list[str]:
        return [_FILES[name] for name in self._file_names()]

    def source(self) -> str:
        import torchvision.datasets

        return str(torchvision.datasets.SVHN.split_list["train"][0].rsplit("/", 1)[0] + "/")

    def fetch(self) -> None:
        import torchvision.datasets

        for name in self._file_names():
            if not (self.data_dir / _FILES[name]).is_file():
                torchvision.datasets.SVHN(str(self.data_dir), split=name, download=True)

    def read_part(self, part: Part) -> tuple[Tensor, Tensor]:
        names = ["train", "extra"] if part == "train" and self.use_extra else [part]
        parts = [read_svhn_mat(self.locate((_FILES[name],))) for name in names]
        return torch.cat([images for images, _ in parts]), torch.cat([labels for _, labels in parts])
