"""MNIST (LeCun et al. 1998) and Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 1×28×28 grey
images of 10 classes, 60 000 for training and 10 000 for testing.

Files, in torchvision's layout under ``data_dir``, raw IDX or gzipped (read either way, so a
folder of the published ``.gz`` archives works read-only)::

    MNIST/raw/train-images-idx3-ubyte   MNIST/raw/train-labels-idx1-ubyte
    MNIST/raw/t10k-images-idx3-ubyte    MNIST/raw/t10k-labels-idx1-ubyte

(``FashionMNIST/raw/...`` for Fashion-MNIST.)
"""

from __future__ import annotations

from torch import Tensor

from datamodules.files import ExpectedFile
from datamodules.image_split import PaddingMode
from datamodules.published import Part, PublishedDataModule
from datamodules.readers import check_count, read_idx_images, read_idx_labels

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


class _IdxDataModule(PublishedDataModule):
    """A dataset of four IDX files under ``<data_dir>/<torchvision class name>/raw``."""

    torchvision_name = ""

    def _path(self, name: str) -> str:
        return f"{self.torchvision_name}/raw/{name}"

    def expected_files(self) -> list[ExpectedFile]:
        return [(self._path(name), self._path(name) + ".gz") for part in ("train", "test") for name in _IDX_FILES[part]]

    def download_writes(self) -> list[str]:
        return [self.torchvision_name]

    def _torchvision_class(self) -> type:
        import torchvision.datasets

        return getattr(torchvision.datasets, self.torchvision_name)

    def source(self) -> str:
        return str(self._torchvision_class().mirrors[0])

    def fetch(self) -> None:
        dataset = self._torchvision_class()
        for train in (True, False):
            dataset(str(self.data_dir), train=train, download=True)

    def read_part(self, part: Part) -> tuple[Tensor, Tensor]:
        image_file, label_file = (self.locate((self._path(n), self._path(n) + ".gz")) for n in _IDX_FILES[part])
        images = read_idx_images(image_file, (28, 28))  # (N, 1, 28, 28) uint8
        labels = read_idx_labels(label_file, self.num_classes)
        check_count(images, labels, f"{image_file} and {label_file}")
        return images, labels


class MNIST(_IdxDataModule):
    """MNIST handwritten digits, 1×28×28, classes "0" to "9".

    Args:
        data_dir: folder holding ``MNIST/raw/`` (torchvision's layout; ``~`` is expanded).
        download: fetch missing files through torchvision in ``prepare_data``; off by default,
            so that a wrong ``data_dir`` fails at once instead of downloading.
        val_size: training images held out for validation, as a count or a fraction; drawn by a
            permutation seeded with ``seed``.
        seed: seed of the train/validation split (independent of the training seed).
        batch_size: training batch size.
        eval_batch_size: validation/test batch size.
        num_workers: dataloader worker processes.
        augment: random crop after padding (and flips if ``horizontal_flip``) on the training
            split; off by default, as in Madry et al. (2018).
        crop_padding: pixels of padding before the random crop.
        padding_mode: "constant" (zeros) or "reflect".
        horizontal_flip: random left-right flips; off, since flipping changes digits.
        normalize: the model's normalisation layer uses MNIST's mean and standard deviation
            (0.1307, 0.3081); False makes it the identity (mean 0, std 1), as in reference
            implementations that feed raw [0, 1] pixels (Madry et al., Wong et al., TRADES).
    """

    dataset_name = "MNIST"
    torchvision_name = "MNIST"

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = False,
        val_size: int | float = 5000,
        seed: int = 0,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        augment: bool = False,
        crop_padding: int = 2,
        padding_mode: PaddingMode = "constant",
        horizontal_flip: bool = False,
        normalize: bool = True,
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
        self.num_classes = 10
        self.input_shape = (1, 28, 28)
        self.mean = (0.1307,) if normalize else (0.0,)
        self.std = (0.3081,) if normalize else (1.0,)
        self.class_names = [str(digit) for digit in range(10)]
        self.check_files()


class FashionMNIST(_IdxDataModule):
    """Fashion-MNIST clothing images, 1×28×28, 10 classes ("T-shirt/top" ... "Ankle boot").

    Args:
        data_dir: folder holding ``FashionMNIST/raw/`` (torchvision's layout; ``~`` is expanded).
        download: fetch missing files through torchvision in ``prepare_data``; off by default.
        val_size: training images held out for validation, as a count or a fraction; drawn by a
            permutation seeded with ``seed``.
        seed: seed of the train/validation split (independent of the training seed).
        batch_size: training batch size.
        eval_batch_size: validation/test batch size.
        num_workers: dataloader worker processes.
        augment: random crop after padding and horizontal flips on the training split (off by
            default).
        crop_padding: pixels of padding before the random crop.
        padding_mode: "constant" (zeros) or "reflect".
        horizontal_flip: random left-right flips (clothes keep their class when mirrored).
        normalize: the model's normalisation layer uses Fashion-MNIST's mean and standard
            deviation (0.2860, 0.3530); False makes it the identity (mean 0, std 1), as in
            reference implementations that feed raw [0, 1] pixels (Chen et al. 2019).
    """

    dataset_name = "Fashion-MNIST"
    torchvision_name = "FashionMNIST"

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = False,
        val_size: int | float = 5000,
        seed: int = 0,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        augment: bool = False,
        crop_padding: int = 2,
        padding_mode: PaddingMode = "constant",
        horizontal_flip: bool = True,
        normalize: bool = True,
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
        self.num_classes = 10
        self.input_shape = (1, 28, 28)
        self.mean = (0.2860,) if normalize else (0.0,)
        self.std = (0.3530,) if normalize else (1.0,)
        self.class_names = list(FASHION_MNIST_CLASSES)
        self.check_files()
