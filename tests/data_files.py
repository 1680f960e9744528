"""Write tiny datasets in the published formats, for tests of the real readers.

Each writer returns what it wrote as uint8 (N, C, H, W) images and int64 labels, so tests can
compare the datamodule's items with the files' contents pixel for pixel.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def patterned_images(n: int, channels: int, size: int, seed: int) -> np.ndarray:
    """(N, C, H, W) uint8 images whose every pixel differs between examples and channels."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, channels, size, size), dtype=np.uint8)


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """An IDX file of unsigned bytes: magic 0 0 8 ndim, big-endian int32 sizes, the values."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def write_mnist(
    root: Path, folder: str = "MNIST", n_train: int = 40, n_test: int = 12, compress: bool = False
) -> dict[str, tuple[Tensor, Tensor]]:
    """The four IDX files of MNIST (or ``folder`` = "FashionMNIST") under ``root/folder/raw``."""
    written = {}
    for part, prefix, n, seed in (("train", "train", n_train, 1), ("test", "t10k", n_test, 2)):
        images = patterned_images(n, 1, 28, seed)
        labels = (np.arange(n) * 7 % 10).astype(np.uint8)
        write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte", images[:, 0], compress)
        write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte", labels, compress)
        written[part] = (torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))
    return written


def write_cifar(root: Path, num_classes: int = 10, n_per_batch: int = 8) -> dict[str, tuple[Tensor, Tensor]]:
    """CIFAR-10 (5 training batches and a test batch) or CIFAR-100 (train, test) pickles."""
    if num_classes == 10:
        folder, label_key = root / "cifar-10-batches-py", "labels"
        batches = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    else:
        folder, label_key = root / "cifar-100-python", "fine_labels"
        batches = {"train": ["train"], "test": ["test"]}
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for part, names in batches.items():
        all_images, all_labels = [], []
        for b, name in enumerate(names):
            images = patterned_images(n_per_batch, 3, 32, seed=10 * b + (part == "test"))
            labels = (np.arange(n_per_batch) * 3 + b) % num_classes
            entry = {
                "batch_label": f"batch {b}",
                label_key: [int(v) for v in labels],
                "data": images.reshape(n_per_batch, 3 * 32 * 32),  # R plane, G plane, B plane
                "filenames": [f"img_{b}_{i}.png" for i in range(n_per_batch)],
            }
            with open(folder / name, "wb") as f:
                pickle.dump(entry, f, protocol=2)
            all_images.append(images)
            all_labels.append(labels)
        written[part] = (torch.from_numpy(np.concatenate(all_images)), torch.from_numpy(np.concatenate(all_labels)))
    return written


def write_svhn(root: Path, n_train: int = 20, n_test: int = 8) -> dict[str, tuple[Tensor, Tensor]]:
    """``train_32x32.mat`` and ``test_32x32.mat``: X (32, 32, 3, N), y (N, 1) with 10 for 0."""
    import scipy.io

    root.mkdir(parents=True, exist_ok=True)
    written = {}
    for part, n, seed in (("train", n_train, 3), ("test", n_test, 4)):
        images = patterned_images(n, 3, 32, seed)
        digits = np.arange(n) % 10
        stored = np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]
        scipy.io.savemat(str(root / f"{part}_32x32.mat"), {"X": images.transpose(2, 3, 1, 0), "y": stored})
        written[part] = (torch.from_numpy(images), torch.from_numpy(digits.astype(np.int64)))
    return written


def write_png_folder(
    folder: Path, classes: dict[str, int], size: tuple[int, int] = (20, 12), mode: str = "RGB", seed: int = 0
) -> dict[Path, np.ndarray]:
    """``count`` PNG images per class under ``folder/<class>/``; returns their pixel arrays."""
    rng = np.random.default_rng(seed)
    written = {}
    for name, count in classes.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            shape = (size[0], size[1], 3) if mode == "RGB" else size
            array = rng.integers(0, 256, size=shape, dtype=np.uint8)
            path = folder / name / f"{i:03d}.png"
            Image.fromarray(array).save(path)
            written[path] = array
    return written


def tree(root: Path) -> list[str]:
    """Every path under ``root`` (relative, sorted), to check that nothing was written."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []
