"""Readers of the published dataset formats into uint8 image tensors and int64 labels.

Every reader returns images as (N, C, H, W) uint8 and labels as (N,) int64, checks what it
reads (header, sizes, label range: :mod:`datamodules.integrity`) and names the file, and the
first bad example's index, in any error. None of them executes code
stored in a file: CIFAR's pickled batches go through an unpickler that accepts only the numpy
array constructors such files need.

Formats:
    IDX (MNIST, Fashion-MNIST; LeCun et al.): a 4-byte magic ``0 0 <type> <ndim>``, ``ndim``
        big-endian int32 sizes, then the values; type 0x08 is unsigned bytes. Read raw or gzipped.
    CIFAR-10/100 python batches (Krizhevsky 2009): a pickled dict with ``data`` (N, 3072) uint8,
        rows of 1024 red, 1024 green, 1024 blue values in row-major order, and ``labels``
        (CIFAR-10) or ``fine_labels`` (CIFAR-100).
    SVHN cropped digits (Netzer et al. 2011): a MATLAB file with ``X`` (32, 32, 3, N) uint8 and
        ``y`` (N, 1) in 1..10, where 10 stands for the digit 0.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from datamodules.integrity import check_labels

_IDX_UBYTE = 0x08


def read_idx(path: Path) -> np.ndarray:
    """The uint8 array stored in the IDX file ``path`` (gzipped when its name ends in .gz)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as error:
        raise ValueError(f"cannot read IDX file {path}: {error}") from error
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    kind, ndim = data[2], data[3]
    if kind != _IDX_UBYTE:
        raise ValueError(f"{path}: expected unsigned-byte IDX data (type 0x08), got type {kind:#04x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path} is truncated (header of {header} bytes, file of {len(data)})")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    size = int(np.prod(shape)) if shape else 0
    if len(data) != header + size:
        raise ValueError(
            f"{path} is truncated or corrupted: its header announces shape {shape} "
            f"({size} bytes of values), the file holds {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_idx_images(path: Path, image_size: tuple[int, int]) -> Tensor:
    """(N, 1, H, W) uint8 images from an IDX file of shape (N, H, W)."""
    array = read_idx(path)
    if array.ndim != 3 or tuple(array.shape[1:]) != image_size:
        raise ValueError(f"{path}: expected images of shape (N, {image_size[0]}, {image_size[1]}), got {array.shape}")
    return torch.from_numpy(array.copy()).unsqueeze(1)


def read_idx_labels(path: Path, num_classes: int) -> Tensor:
    """(N,) int64 labels from an IDX file of shape (N,), each checked to lie in [0, num_classes)."""
    array = read_idx(path)
    if array.ndim != 1:
        raise ValueError(f"{path}: expected labels of shape (N,), got {array.shape}")
    return check_labels(torch.from_numpy(array.astype(np.int64)), num_classes, path)


def check_count(images: Tensor, labels: Tensor, where: str) -> None:
    """Raise when ``images`` and ``labels`` hold different numbers of examples."""
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that builds only dicts, lists, strings, numbers and numpy arrays."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds only arrays")
        if module.startswith("numpy.core."):  # files pickled by numpy 1.x; numpy 2 renamed the package
            module = "numpy._core." + module[len("numpy.core.") :]
        return super().find_class(module, name)


def read_cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[Tensor, Tensor]:
    """(N, 3, 32, 32) uint8 images and (N,) int64 labels from a pickled CIFAR batch.

    Args:
        path: the batch file (``data_batch_1``, ``test_batch``, ``train`` ...).
        label_key: "labels" (CIFAR-10) or "fine_labels" (CIFAR-100).
        num_classes: labels must lie in [0, num_classes).
    """
    try:
        with open(path, "rb") as f:
            entry = _ArrayUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as error:
        raise ValueError(f"cannot read CIFAR batch {path}: {error}") from error
    if not isinstance(entry, dict) or "data" not in entry or label_key not in entry:
        keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise ValueError(f"{path}: expected a dict with 'data' and {label_key!r}, got {keys}")
    data = np.asarray(entry["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: expected 'data' of uint8 and shape (N, 3072), got {data.dtype} {data.shape}")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    labels = check_labels(torch.as_tensor(np.asarray(entry[label_key], dtype=np.int64)), num_classes, path)
    check_count(images, labels, str(path))
    return images, labels


def read_svhn_mat(path: Path) -> tuple[Tensor, Tensor]:
    """(N, 3, 32, 32) uint8 images and (N,) int64 labels in 0..9 from an SVHN ``.mat`` file."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path), variable_names=["X", "y"])
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"cannot read SVHN file {path}: {error}") from error
    if "X" not in mat or "y" not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path}: expected MATLAB variables 'X' and 'y', found {found}")
    x, y = mat["X"], mat["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise ValueError(f"{path}: expected 'X' of uint8 and shape (32, 32, 3, N), got {x.dtype} {x.shape}")
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)))  # (N, 3, 32, 32)
    labels = torch.from_numpy(y.astype(np.int64).reshape(-1))
    bad = ((labels < 1) | (labels > 10)).nonzero().flatten()
    if bad.numel():
        first = int(bad[0])
        others = bad.numel() - 1
        more = f" ({others} more {'label is' if others == 1 else 'labels are'} out of range too)" if others else ""
        raise ValueError(
            f"{path}: SVHN labels must lie in 1..10 (10 stands for the digit 0); example {first} has label "
            f"{int(labels[first])}{more}"
        )
    labels = labels % 10  # the digit 0 is stored as 10
    check_count(images, labels, str(path))
    return images, labels
