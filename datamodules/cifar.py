"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009): 3×32×32 colour images, 50 000 for training and
10 000 for testing, in 10 or 100 (fine-label) classes.

Files, in torchvision's layout under ``data_dir`` (the python version of the archives)::

    cifar-10-batches-py/data_batch_1 ... data_batch_5, cifar-10-batches-py/test_batch
    cifar-100-python/train, cifar-100-python/test

The batches are pickles; they are read by an unpickler that builds numpy arrays and nothing
else (:func:`datamodules.readers.read_cifar_batch`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from datamodules.files import ExpectedFile
from datamodules.image_split import PaddingMode
from datamodules.published import Part, PublishedDataModule
from datamodules.readers import read_cifar_batch

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100_CLASSES = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
]  # fmt: skip


class _CifarDataModule(PublishedDataModule):
    """Pickled CIFAR batches under ``<data_dir>/<base folder>``."""

    torchvision_name = ""
    base_folder = ""
    batches: dict[str, tuple[str, ...]] = {}
    label_key = ""

    def expected_files(self) -> list[ExpectedFile]:
        return [(f"{self.base_folder}/{name}",) for part in ("train", "test") for name in self.batches[part]]

    def _torchvision_class(self) -> type:
        import torchvision.datasets

        return getattr(torchvision.datasets, self.torchvision_name)

    def download_writes(self) -> list[str]:
        return [self.base_folder, self._torchvision_class().filename]

    def source(self) -> str:
        return str(self._torchvision_class().url)

    def fetch(self) -> None:
        self._torchvision_class()(str(self.data_dir), train=True, download=True)

    def read_part(self, part: Part) -> tuple[Tensor, Tensor]:
        parts = [
            read_cifar_batch(self.locate((f"{self.base_folder}/{name}",)), self.label_key, self.num_classes)
            for name in self.batches[part]
        ]
        images = torch.cat([images for images, _ in parts])  # (N, 3, 32, 32) uint8
        labels = torch.cat([labels for _, labels in parts])
        return images, labels


class CIFAR10(_CifarDataModule):
    """CIFAR-10, 3×32×32, 10 classes ("airplane" ... "truck").

    Args:
        data_dir: folder holding ``cifar-10-batches-py/`` (torchvision's layout; ``~`` is expanded).
        download: fetch missing files through torchvision in ``prepare_data``; off by default,
            so that a wrong ``data_dir`` fails at once instead of downloading.
        val_size: training images held out for validation, as a count or a fraction; drawn by a
            permutation seeded with ``seed`` (Rice et al. 2020 hold out 1000).
        seed: seed of the train/validation split (independent of the training seed).
        batch_size: training batch size.
        eval_batch_size: validation/test batch size.
        num_workers: dataloader worker processes.
        augment: random crop after padding and horizontal flips on the training split.
        crop_padding: pixels of padding before the random crop.
        padding_mode: "constant" (zeros, torchvision's RandomCrop) or "reflect" (Rice et al.).
        horizontal_flip: random left-right flips.
    """

    dataset_name = "CIFAR-10"
    torchvision_name = "CIFAR10"
    base_folder = "cifar-10-batches-py"
    batches = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
    label_key = "labels"

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = False,
        val_size: int | float = 1000,
        seed: int = 0,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        augment: bool = True,
        crop_padding: int = 4,
        padding_mode: PaddingMode = "constant",
        horizontal_flip: bool = True,
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
        self.input_shape = (3, 32, 32)
        self.mean = (0.4914, 0.4822, 0.4465)
        self.std = (0.2471, 0.2435, 0.2616)
        self.class_names = list(CIFAR10_CLASSES)
        self.check_files()


class CIFAR100(_CifarDataModule):
    """CIFAR-100, 3×32×32, 100 fine-label classes ("apple" ... "worm").

    Args:
        data_dir: folder holding ``cifar-100-python/`` (torchvision's layout; ``~`` is expanded).
        download: fetch missing files through torchvision in ``prepare_data``; off by default.
        val_size: training images held out for validation, as a count or a fraction; drawn by a
            permutation seeded with ``seed``.
        seed: seed of the train/validation split (independent of the training seed).
        batch_size: training batch size.
        eval_batch_size: validation/test batch size.
        num_workers: dataloader worker processes.
        augment: random crop after padding and horizontal flips on the training split.
        crop_padding: pixels of padding before the random crop.
        padding_mode: "constant" (zeros) or "reflect".
        horizontal_flip: random left-right flips.
    """

    dataset_name = "CIFAR-100"
    torchvision_name = "CIFAR100"
    base_folder = "cifar-100-python"
    batches = {"train": ("train",), "test": ("test",)}
    label_key = "fine_labels"

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = False,
        val_size: int | float = 1000,
        seed: int = 0,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        augment: bool = True,
        crop_padding: int = 4,
        padding_mode: PaddingMode = "constant",
        horizontal_flip: bool = True,
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
        self.num_classes = 100
        self.input_shape = (3, 32, 32)
        self.mean = (0.5071, 0.4865, 0.4409)
        self.std = (0.2673, 0.2564, 0.2762)
        self.class_names = list(CIFAR100_CLASSES)
        self.check_files()
