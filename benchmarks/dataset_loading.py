"""Time to load the real MNIST and Fashion-MNIST, and to serve one epoch of batches.

Copies ``--data_dir`` (default ../shared/data, torchvision's layout with the published .gz
files) into a temporary folder, as its README asks, then for each dataset measures, interleaved
over ``--repeats`` rounds (medians reported; the machine may be shared, so compare within a
row, not across runs):

- ``setup``: constructing the datamodule and building the train, val and test splits
  (reading the IDX files: gzipped as published, then raw after unpacking them);
- ``epoch``: one pass over the training loader (batch 128, no workers), augmentation off/on;
- for reference, torchvision's own dataset: constructing ``torchvision.datasets.<name>`` and one
  pass over a DataLoader with ``ToTensor`` (PIL per item).

    PYTHONPATH=. python benchmarks/dataset_loading.py [--data_dir ../shared/data] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch.utils.data import DataLoader

from datamodules import MNIST, FashionMNIST


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def unpack(root: Path, folder: str) -> Path:
    """A copy of ``root/folder`` with the .gz files unpacked (and the archives left out)."""
    target = root.parent / f"{root.name}-raw"
    raw = target / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for archive in (root / folder / "raw").glob("*.gz"):
        with gzip.open(archive, "rb") as src, open(raw / archive.stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return target


def one_epoch(loader: DataLoader) -> int:
    n = 0
    for x, _ in loader:
        n += x.shape[0]
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(prefix="robustlens-data-") as tmp:
        copy = Path(tmp) / "data"
        shutil.copytree(args.data_dir, copy)
        rows = []
        for cls, folder in ((MNIST, "MNIST"), (FashionMNIST, "FashionMNIST")):
            raw_root = unpack(copy, folder)
            tv_root = Path(tmp) / f"tv-{folder}"
            shutil.copytree(raw_root, tv_root)
            tv_class = getattr(torchvision.datasets, folder)
            to_tensor = torchvision.transforms.ToTensor()

            def setup(root: Path, cls=cls) -> None:
                dm = cls(data_dir=str(root))
                for split in ("train", "val", "test"):
                    dm.split_dataset(split)

            def epoch(augment: bool, cls=cls, root=raw_root) -> None:
                dm = cls(data_dir=str(root), augment=augment, batch_size=128)
                one_epoch(dm.train_dataloader())

            keys = ("setup_gz", "setup_raw", "epoch", "epoch_aug", "tv_setup", "tv_epoch")
            times: dict[str, list[float]] = {k: [] for k in keys}
            for _ in range(args.repeats):
                times["setup_gz"].append(timed(lambda: setup(copy)))
                times["setup_raw"].append(timed(lambda: setup(raw_root)))
                times["epoch"].append(timed(lambda: epoch(False)))
                times["epoch_aug"].append(timed(lambda: epoch(True)))
                times["tv_setup"].append(timed(lambda: [tv_class(str(tv_root), train=t) for t in (True, False)]))
                dataset = tv_class(str(tv_root), train=True, transform=to_tensor)
                times["tv_epoch"].append(timed(lambda: one_epoch(DataLoader(dataset, batch_size=128, shuffle=True))))
            rows.append((folder, {k: statistics.median(v) for k, v in times.items()}))

    header = (
        "| dataset | setup from .gz (s) | setup from raw (s) | train epoch (s) | with augment (s) "
        "| torchvision setup (s) | torchvision epoch, PIL+ToTensor (s) |"
    )
    print(header)
    print("|" + " --- |" * 7)
    for name, t in rows:
        print(
            f"| {name} | {t['setup_gz']:.2f} | {t['setup_raw']:.2f} | {t['epoch']:.2f} | {t['epoch_aug']:.2f} "
            f"| {t['tv_setup']:.2f} | {t['tv_epoch']:.2f} |"
        )
    print(
        f"\nmedians of {args.repeats} interleaved rounds, 1 torch thread, num_workers 0; "
        "our train epoch is 55 000 images (5 000 held out), torchvision's 60 000"
    )
    print("command: PYTHONPATH=. " + " ".join([Path(sys.executable).name, *sys.argv]))


if __name__ == "__main__":
    main()
