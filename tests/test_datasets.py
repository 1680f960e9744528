"""The real-dataset datamodules read tiny files written in the published formats."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets
from PIL import Image

from datamodules import CIFAR10, CIFAR100, MNIST, SVHN, FashionMNIST, ImageFolder, RandomCropFlip
from datamodules.readers import read_idx
from tests.data_files import tree, write_cifar, write_idx, write_mnist, write_png_folder, write_svhn


def assert_split_matches_files(dm, split: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Every item of ``split`` is the written image (in [0, 1]) and label at its index."""
    dataset = dm.split_dataset(split)
    for k in range(len(dataset)):
        x, y = dataset[k]
        i = int(dataset.indices[k])
        assert x.dtype == torch.float32 and x.shape == tuple(dm.input_shape)
        torch.testing.assert_close(x, images[i].float() / 255, rtol=0, atol=0)
        assert int(y) == int(labels[i])


def assert_split_partition(dm, n_train_part: int) -> None:
    """train and val are disjoint, cover the training part, and val has val_size examples."""
    train, val = dm.split_dataset("train").indices, dm.split_dataset("val").indices
    assert len(val) == dm.val_size
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(n_train_part))


def assert_loader_batch(dm, split: str) -> None:
    loader = {"train": dm.train_dataloader, "val": dm.val_dataloader, "test": dm.test_dataloader}[split]()
    x, y = next(iter(loader))
    assert x.dtype == torch.float32 and tuple(x.shape[1:]) == tuple(dm.input_shape)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert y.dtype == torch.int64 and x.shape[0] == y.shape[0]


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("cls, folder", [(MNIST, "MNIST"), (FashionMNIST, "FashionMNIST")])
def test_idx_datamodules_read_the_files_written(tmp_path: Path, cls, folder: str, compress: bool) -> None:
    written = write_mnist(tmp_path, folder, n_train=40, n_test=12, compress=compress)
    before = tree(tmp_path)
    dm = cls(data_dir=str(tmp_path), val_size=10, batch_size=8, eval_batch_size=5)
    dm.setup("fit")
    dm.setup("test")
    assert dm.input_shape == (1, 28, 28) and dm.num_classes == 10 and len(dm.class_names) == 10
    for split, part in (("train", "train"), ("val", "train"), ("test", "test")):
        assert_split_matches_files(dm, split, *written[part])
        assert_loader_batch(dm, split)
    assert_split_partition(dm, 40)
    assert tree(tmp_path) == before  # gzipped files are read in place, never unpacked


def test_split_is_seeded(tmp_path: Path) -> None:
    write_mnist(tmp_path, n_train=40)
    val = [MNIST(data_dir=str(tmp_path), val_size=10, seed=s).split_dataset("val").indices for s in (0, 0, 1)]
    assert torch.equal(val[0], val[1])
    assert not torch.equal(val[0], val[2])
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(MNIST(data_dir=str(tmp_path), val_size=10, seed=0).split_dataset("val").indices, val[0])
    fraction = MNIST(data_dir=str(tmp_path), val_size=0.25).split_dataset("val")
    assert len(fraction) == 10


@pytest.mark.parametrize("cls, num_classes", [(CIFAR10, 10), (CIFAR100, 100)])
def test_cifar_datamodules_read_pickled_batches(tmp_path: Path, cls, num_classes: int) -> None:
    written = write_cifar(tmp_path, num_classes, n_per_batch=8)
    dm = cls(data_dir=str(tmp_path), val_size=4, augment=False, batch_size=4)
    assert dm.input_shape == (3, 32, 32) and dm.num_classes == num_classes and len(dm.class_names) == num_classes
    assert len(set(dm.class_names)) == num_classes
    for split, part in (("train", "train"), ("val", "train"), ("test", "test")):
        assert_split_matches_files(dm, split, *written[part])
        assert_loader_batch(dm, split)
    n_train = written["train"][1].shape[0]
    assert n_train == (40 if num_classes == 10 else 8)
    assert_split_partition(dm, n_train)


def test_cifar_rows_are_channel_planes(tmp_path: Path) -> None:
    """A CIFAR row holds the red plane, then green, then blue, each row-major."""
    write_cifar(tmp_path, 10, n_per_batch=2)
    folder = tmp_path / "cifar-10-batches-py"
    row = np.concatenate([np.full(1024, 10), np.full(1024, 20), np.arange(1024) % 256]).astype(np.uint8)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": row[None], "labels": [3]}, f, protocol=2)
    x, y = CIFAR10(data_dir=str(tmp_path)).split_dataset("test")[0]
    assert int(y) == 3
    assert torch.all(x[0] == 10 / 255) and torch.all(x[1] == 20 / 255)
    assert float(x[2, 0, 5]) == pytest.approx(5 / 255) and float(x[2, 1, 0]) == pytest.approx(32 / 255)


def test_cifar_reader_refuses_pickles_that_run_code(tmp_path: Path) -> None:
    write_cifar(tmp_path, 10, n_per_batch=2)
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({"data": Payload(), "labels": [0]}, f, protocol=2)
    with pytest.raises(ValueError, match="test_batch.*refusing"):
        CIFAR10(data_dir=str(tmp_path)).split_dataset("test")
    assert not marker.exists()


def test_svhn_reads_mat_files_and_maps_10_to_0(tmp_path: Path) -> None:
    written = write_svhn(tmp_path, n_train=20, n_test=8)
    dm = SVHN(data_dir=str(tmp_path), val_size=5, augment=False, batch_size=4)
    for split, part in (("train", "train"), ("val", "train"), ("test", "test")):
        assert_split_matches_files(dm, split, *written[part])
        assert_loader_batch(dm, split)
    assert_split_partition(dm, 20)
    assert int(dm.split_dataset("test")[0][1]) == 0  # stored as 10
    assert set(written["test"][1].tolist()) <= set(range(10))


@pytest.mark.parametrize(
    "make, layout",
    [
        (
            lambda root: MNIST(data_dir=str(root)),
            ["MNIST/raw/train-images-idx3-ubyte", "MNIST/raw/t10k-labels-idx1-ubyte"],
        ),
        (lambda root: FashionMNIST(data_dir=str(root)), ["FashionMNIST/raw/train-images-idx3-ubyte"]),
        (
            lambda root: CIFAR10(data_dir=str(root)),
            [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)] + ["cifar-10-batches-py/test_batch"],
        ),
        (lambda root: CIFAR100(data_dir=str(root)), ["cifar-100-python/train", "cifar-100-python/test"]),
        (lambda root: SVHN(data_dir=str(root)), ["train_32x32.mat", "test_32x32.mat"]),
        (lambda root: SVHN(data_dir=str(root), use_extra=True), ["extra_32x32.mat"]),
    ],
    ids=["mnist", "fashion", "cifar10", "cifar100", "svhn", "svhn-extra"],
)
def test_missing_files_fail_at_construction_naming_them(tmp_path: Path, make, layout: list[str]) -> None:
    root = tmp_path / "data"
    with pytest.raises(FileNotFoundError) as info:
        make(root)
    message = str(info.value)
    assert message.startswith("data_dir")
    for name in layout:
        assert str(root / name) in message
    assert "download: true" in message
    assert not root.exists() and tree(tmp_path) == []


def test_one_missing_file_is_named_alone(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    before = tree(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        MNIST(data_dir=str(tmp_path))
    message = str(info.value)
    assert "t10k-labels-idx1-ubyte" in message and "train-images-idx3-ubyte" not in message
    assert tree(tmp_path) == before


def test_failed_download_cleans_up_and_names_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])  # nothing listens there
    root = tmp_path / "data"
    dm = MNIST(data_dir=str(root), download=True)
    assert not root.exists()  # the constructor never writes
    with pytest.raises(RuntimeError) as info:
        dm.prepare_data()
    assert "could not download MNIST" in str(info.value)
    assert str(root / "MNIST/raw/train-images-idx3-ubyte") in str(info.value)
    assert not root.exists()


def test_failed_download_keeps_what_was_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError, match="could not download CIFAR-10"):
        CIFAR10(data_dir=str(tmp_path), download=True).prepare_data()
    assert tree(tmp_path) == ["notes.txt"]


def test_download_is_skipped_when_files_are_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_svhn(tmp_path)

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torchvision.datasets, "SVHN", no_network)
    dm = SVHN(data_dir=str(tmp_path), download=True)
    dm.prepare_data()
    assert len(dm.split_dataset("test")) == 8


def test_truncated_and_mislabelled_files_are_named(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte is truncated"):
        MNIST(data_dir=str(tmp_path)).setup("fit")
    write_mnist(tmp_path)
    write_idx(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", np.full(12, 11, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte: labels must lie in \[0, 9\]"):
        MNIST(data_dir=str(tmp_path)).setup("test")


def test_idx_reader_reads_gzip_like_raw(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a", array)
    write_idx(tmp_path / "b", array, compress=True)
    assert np.array_equal(read_idx(tmp_path / "a"), array)
    assert np.array_equal(read_idx(tmp_path / "b.gz"), array)
    (tmp_path / "c.gz").write_bytes(gzip.compress(b"\x00\x00\x0d\x01\x00\x00\x00\x01abcd"))
    with pytest.raises(ValueError, match="c.gz: expected unsigned-byte"):
        read_idx(tmp_path / "c.gz")


def test_augmentation_only_on_the_training_split(tmp_path: Path) -> None:
    written = write_cifar(tmp_path, 10, n_per_batch=8)
    dm = CIFAR10(data_dir=str(tmp_path), val_size=4)  # augment is on by default
    assert dm.split_dataset("train").augment is not None
    assert dm.split_dataset("val").augment is None and dm.split_dataset("test").augment is None
    assert_split_matches_files(dm, "val", *written["train"])
    assert_split_matches_files(dm, "test", *written["test"])
    torch.manual_seed(0)
    train = dm.split_dataset("train")
    originals = written["train"][0][train.indices].float() / 255
    changed = sum(not torch.equal(train[k][0], originals[k]) for k in range(len(train)))
    assert changed > len(train) // 2


def test_random_crop_flip_is_a_shifted_window_of_the_padded_image() -> None:
    x = torch.rand(3, 8, 8)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    windows = {(i, j): padded[:, i : i + 8, j : j + 8] for i in range(5) for j in range(5)}
    augment = RandomCropFlip(padding=2, horizontal_flip=True)
    torch.manual_seed(0)
    flips = 0
    for _ in range(200):
        y = augment(x)
        plain = any(torch.equal(y, w) for w in windows.values())
        flipped = any(torch.equal(y, w.flip(-1)) for w in windows.values())
        assert plain or flipped
        flips += flipped and not plain
    assert 60 < flips < 140  # a fair coin: P(outside) < 1e-8
    assert torch.equal(RandomCropFlip(padding=0, horizontal_flip=False)(x), x)
    reflect = RandomCropFlip(padding=2, padding_mode="reflect", horizontal_flip=False)
    assert set(reflect(x).flatten().tolist()) <= set(x.flatten().tolist())


def test_bad_options_fail_at_construction(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    for kwargs, field in (
        ({"val_size": 0}, "val_size"),
        ({"val_size": 1.5}, "val_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_workers": -1}, "num_workers"),
        ({"padding_mode": "wrap"}, "padding_mode"),
    ):
        with pytest.raises(ValueError, match=f"^{field} must"):
            MNIST(data_dir=str(tmp_path), **kwargs)
    with pytest.raises(ValueError, match="val_size must leave"):
        MNIST(data_dir=str(tmp_path), val_size=40).setup("fit")


def test_probe_batch_through_the_base_class(tmp_path: Path) -> None:
    written = write_svhn(tmp_path)
    dm = SVHN(data_dir=str(tmp_path), val_size=6)
    probe = dm.probe_batch(4, seed=1)
    again = dm.probe_batch(4, seed=1)
    assert probe.x.shape == (4, 3, 32, 32) and torch.equal(probe.x, again.x)
    val = dm.split_dataset("val")
    for k, i in enumerate(probe.indices.tolist()):
        torch.testing.assert_close(probe.x[k], written["train"][0][int(val.indices[i])].float() / 255, rtol=0, atol=0)
    assert probe.mask is None


# ImageFolder ---------------------------------------------------------------------------------


def test_image_folder_flat_layout_resizes_and_splits(tmp_path: Path) -> None:
    written = write_png_folder(tmp_path, {"cat": 6, "dog": 5, "emu": 4}, size=(20, 12))
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "dog" / ".hidden").write_bytes(b"\0")
    dm = ImageFolder(data_dir=str(tmp_path), image_size=(12, 8), channels=3, val_size=3, test_size=0.2, batch_size=4)
    assert dm.class_names == ["cat", "dog", "emu"] and dm.num_classes == 3 and dm.input_shape == (3, 12, 8)
    sizes = {s: len(dm.split_dataset(s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 9, "val": 3, "test": 3}
    seen = []
    for split in ("train", "val", "test"):
        dataset = dm.split_dataset(split)
        for k in range(len(dataset)):
            x, y = dataset[k]
            path = dataset.source.paths[int(dataset.indices[k])]
            seen.append(path)
            assert dm.class_names[int(y)] == path.parent.name
            expected = np.array(Image.fromarray(written[path]).resize((8, 12), Image.Resampling.BILINEAR))
            torch.testing.assert_close(x, torch.from_numpy(expected).permute(2, 0, 1).float() / 255, rtol=0, atol=0)
        assert_loader_batch(dm, split)
    assert sorted(seen) == sorted(written)


def test_image_folder_split_layout_and_grey(tmp_path: Path) -> None:
    write_png_folder(tmp_path / "train", {"a": 4, "b": 4}, size=(16, 16), mode="RGB")
    write_png_folder(tmp_path / "test", {"a": 2, "b": 1}, size=(16, 16), mode="L", seed=1)
    dm = ImageFolder(data_dir=str(tmp_path), image_size=8, channels=1, val_size=2)
    assert dm.input_shape == (1, 8, 8) and dm.mean == (0.449,)
    assert len(dm.split_dataset("train")) == 6 and len(dm.split_dataset("val")) == 2
    test = dm.split_dataset("test")
    assert len(test) == 3 and [int(test[k][1]) for k in range(3)] == [0, 0, 1]
    x, _ = dm.split_dataset("train")[0]
    assert x.shape == (1, 8, 8) and 0 <= float(x.min()) <= float(x.max()) <= 1


def test_image_folder_crop_mode_keeps_aspect_ratio(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    wide = np.zeros((8, 24), dtype=np.uint8)
    wide[:, 8:16] = 255  # a white centre third
    for cls in ("a", "b"):
        for i in range(3):
            Image.fromarray(wide).save(tmp_path / cls / f"{i}.png")
    dm = ImageFolder(data_dir=str(tmp_path), image_size=8, channels=1, resize_mode="crop", val_size=1, test_size=1)
    x, _ = dm.split_dataset("test")[0]
    assert torch.all(x == 1.0)  # the centre square of the wide image


@pytest.mark.parametrize("bad", ["notes.txt", "broken.png", "deep.png"])
def test_image_folder_names_the_file_it_cannot_use(tmp_path: Path, bad: str) -> None:
    write_png_folder(tmp_path, {"a": 3, "b": 3})
    path = tmp_path / "b" / bad
    if bad == "notes.txt":
        path.write_text("not an image")
        match = "notes.txt is not an image file"
    elif bad == "broken.png":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
        match = "cannot read image .*broken.png"
    else:
        Image.fromarray(np.full((12, 12), 40000, dtype=np.uint16)).save(path)  # 16-bit grey
        match = "cannot read image .*deep.png.*8 bits"
    dm = ImageFolder(data_dir=str(tmp_path), image_size=8, val_size=1, test_size=1)
    with pytest.raises(ValueError, match=match):
        dm.setup("fit")
        for split in ("train", "val", "test"):
            dataset = dm.split_dataset(split)
            for k in range(len(dataset)):
                dataset[k]


def test_image_folder_truncated_image_is_named_when_decoded(tmp_path: Path) -> None:
    write_png_folder(tmp_path, {"a": 3, "b": 3}, size=(32, 32))
    path = tmp_path / "a" / "001.png"
    path.write_bytes(path.read_bytes()[:200])
    dm = ImageFolder(data_dir=str(tmp_path), image_size=8, val_size=1, test_size=1)
    items = [(s, k) for s in ("train", "val", "test") for k in range(len(dm.split_dataset(s)))]
    with pytest.raises(ValueError, match="cannot read image .*001.png"):
        for split, k in items:
            dm.split_dataset(split)[k]


def test_image_folder_bad_layouts_fail_at_construction(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="^data_dir"):
        ImageFolder(data_dir=str(tmp_path / "absent"))
    assert not (tmp_path / "absent").exists()
    write_png_folder(tmp_path / "one", {"only": 2})
    with pytest.raises(ValueError, match="^data_dir .*at least 2 class folders"):
        ImageFolder(data_dir=str(tmp_path / "one"))
    with pytest.raises(ValueError, match="^channels must be 1 or 3"):
        ImageFolder(data_dir=str(tmp_path), channels=2)
    with pytest.raises(ValueError, match="^mean must have 1 value"):
        ImageFolder(data_dir=str(tmp_path), channels=1, mean=(0.5, 0.5, 0.5))
