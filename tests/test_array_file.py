"""``datamodules.ArrayFile`` serves the arrays of its ``.npz`` files as they are, in either layout,
and the value checks find the first bad example whatever the dtype and wherever it sits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import ArrayFile
from datamodules.integrity import CHUNK, check_labels, check_pixels


def _write(path: Path, images: np.ndarray, labels: np.ndarray, **names: str) -> Path:
    np.savez(path, **{names.get("image", "image"): images, names.get("label", "label"): labels})
    return path


def test_items_are_the_files_values_in_either_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, size=(30, 12, 10, 3), dtype=np.uint8)
    labels = np.arange(30) % 3
    train_file = _write(tmp_path / "train.npz", nhwc, labels)
    nchw = rng.random((8, 3, 12, 10), dtype=np.float32)
    test_file = _write(tmp_path / "test.npz", nchw, np.arange(8) % 3)
    dm = ArrayFile(str(train_file), num_classes=3, test_file=str(test_file), val_size=6)
    assert dm.input_shape == (3, 12, 10) and dm.class_names == ["0", "1", "2"]
    train, val, test = (dm.split_dataset(s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (24, 6, 8)
    seen = sorted(int(i) for split in (train, val) for i in split.indices)
    assert seen == list(range(30))  # a partition of the training file
    for split in (train, val):
        for k in range(len(split)):
            x, y = split[k]
            i = int(split.indices[k])
            torch.testing.assert_close(x, torch.from_numpy(nhwc[i].transpose(2, 0, 1)).float() / 255)
            assert int(y) == labels[i]
    x, _ = test[5]
    assert x.dtype == torch.float32 and torch.equal(x, torch.from_numpy(nchw[5]))  # floats served unchanged
    x[:] = 7.0
    assert float(test[5][0].max()) <= 1.0  # an item is a copy: changing it leaves the data alone


def test_grey_images_custom_names_and_a_test_split_drawn_from_the_file(tmp_path: Path) -> None:
    images = np.zeros((20, 9, 9), dtype=np.uint8)
    path = _write(tmp_path / "grey.npz", images, np.arange(20) % 2, image="x", label="y")
    dm = ArrayFile(str(path), num_classes=2, image_key="x", label_key="y", val_size=4, test_size=5, class_names=["a", "b"])
    assert dm.input_shape == (1, 9, 9) and dm.mean == (0.5,)
    sizes = [len(dm.split_dataset(s)) for s in ("train", "val", "test")]
    assert sizes == [11, 4, 5]
    indices = [set(dm.split_dataset(s).indices.tolist()) for s in ("train", "val", "test")]
    assert not (indices[0] & indices[1] or indices[0] & indices[2] or indices[1] & indices[2])


@pytest.mark.parametrize(
    "images, labels, kwargs, message",
    [
        (np.zeros((4, 3, 8, 8, 2)), np.zeros(4, int), {}, "shape"),
        (np.zeros((4, 3, 8, 3), np.uint8), np.zeros(4, int), {}, "set layout"),
        (np.zeros((4, 8, 8), np.uint8), np.zeros(5, int), {}, "one label per image"),
        (np.zeros((4, 8, 8), np.uint8), np.zeros(4, int), {"image_key": "pixels"}, "no array 'pixels'"),
        (np.zeros((4, 8, 8), np.uint8), np.zeros(4, int), {"class_names": ["a"]}, "class_names"),
    ],
)
def test_files_that_do_not_fit_are_refused_when_the_datamodule_is_built(
    tmp_path: Path, images: np.ndarray, labels: np.ndarray, kwargs: dict, message: str
) -> None:
    path = _write(tmp_path / "bad.npz", images, labels)
    with pytest.raises(ValueError, match=message):
        ArrayFile(str(path), num_classes=2, **kwargs)


def test_pixel_check_finds_the_first_bad_example_in_any_chunk() -> None:
    images = torch.rand(CHUNK + 10, 1, 2, 2)
    check_pixels(images, "f.npz")
    check_pixels((images * 255).to(torch.uint8), "f.npz")  # uint8 needs no check
    images[CHUNK + 3, 0, 1, 1] = float("inf")
    images[CHUNK + 7, 0, 0, 0] = -0.5
    with pytest.raises(ValueError, match=rf"f\.npz: .*example {CHUNK + 3} holds NaN or infinite values .*1 more example"):
        check_pixels(images, "f.npz")
    with pytest.raises(ValueError, match=r"example 1003 .*outside \[0, 1\] \(e\.g\. -0\.5\)"):
        check_pixels(images[CHUNK + 4 :], "f.npz", offset=1000)
    with pytest.raises(ValueError, match="uint8 .* or floating point"):
        check_pixels(torch.zeros(2, 1, 2, 2, dtype=torch.int32), "f.npz")


def test_label_check_names_the_first_bad_index_and_counts_the_rest() -> None:
    labels = torch.tensor([0, 1, 2, 1, -1, 5])
    assert check_labels(labels[:4], 3, "l") is not None
    with pytest.raises(ValueError, match=r"l: labels must lie in \[0, 2\]; example 4 has label -1 \(1 more label is"):
        check_labels(labels, 3, "l")
    with pytest.raises(ValueError, match="integers"):
        check_labels(labels.float(), 3, "l")
