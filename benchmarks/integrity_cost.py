"""What integrity costs: atomic checkpoint writes, bundle verification, the pre-run checks.

- Checkpoint save of a CIFAR-10 PreAct ResNet-18 (weights, SGD momentum, as a fit saves it):
  Lightning's ``TorchCheckpointIO`` against :class:`callbacks.checkpoint_io.AtomicCheckpointIO`
  (temporary file beside the destination, fsync, rename, folder fsync), alternating, medians.
- Bundle verification (:func:`export.integrity.verify_bundle`): SHA-256 of every file of a
  bundle the size of that model's.
- The schedule simulation of the pre-run checks: a OneCycleLR stepped for a 200-epoch CIFAR-10
  run (391 steps per epoch, 78 200 steps; the check stops at 100 000).
- The value checks of the data: a float32 CIFAR-10-sized training set (50 000 × 3 × 32 × 32,
  in chunks) and its labels.

    PYTHONPATH=. python benchmarks/integrity_cost.py [--repeats 5] [--folder <dir on the disk to measure>]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from benchmarks.timing import median_seconds
from callbacks.checkpoint_io import AtomicCheckpointIO
from datamodules.integrity import check_labels, check_pixels
from export.integrity import file_records, verify_bundle
from lightning_modules import build_model
from preflight.optimization import check_schedule
from pytorch_lightning.plugins.io import TorchCheckpointIO


def preact_checkpoint() -> dict:
    model = build_model("preact_resnet18", 10, (3, 32, 32), (0.5,) * 3, (0.25,) * 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = model(torch.rand(2, 3, 32, 32)).sum()
    loss.backward()
    optimizer.step()  # fills the momentum buffers
    return {"state_dict": model.state_dict(), "optimizer_states": [optimizer.state_dict()], "epoch": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folder", default=None, help="where to write (default: a temporary folder)")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="robustlens-integrity-", dir=args.folder) as tmp:
        root = Path(tmp)
        checkpoint = preact_checkpoint()
        plain, atomic = TorchCheckpointIO(), AtomicCheckpointIO()
        times = {"TorchCheckpointIO (Lightning)": [], "AtomicCheckpointIO (robustlens)": []}
        for _ in range(args.repeats):  # alternating, so that load from elsewhere falls on both
            times["TorchCheckpointIO (Lightning)"].append(median_seconds(lambda: plain.save_checkpoint(checkpoint, root / "plain.ckpt"), 1))
            times["AtomicCheckpointIO (robustlens)"].append(median_seconds(lambda: atomic.save_checkpoint(checkpoint, root / "atomic.ckpt"), 1))
        size = (root / "atomic.ckpt").stat().st_size / 1e6
        for name, values in times.items():
            rows.append((f"checkpoint save, {name}, {size:.0f} MB", sorted(values)[len(values) // 2]))

        bundle = root / "bundle"
        bundle.mkdir()
        weights = {k: v for k, v in checkpoint["state_dict"].items()}
        for name in ("model.safetensors", "state_dict.pt", "model.pt2"):
            torch.save(weights, bundle / name)  # three files of the size a bundle of this model holds
        names = [p.name for p in bundle.iterdir()]
        metadata = file_records(bundle, names)
        total = sum(metadata["bytes"].values()) / 1e6
        rows.append((f"bundle verification, {total:.0f} MB in {len(names)} files", median_seconds(lambda: verify_bundle(bundle, metadata), args.repeats)))

    node = {"class_path": "torch.optim.lr_scheduler.OneCycleLR", "init_args": {"max_lr": 0.2, "total_steps": 78_200}}

    def sgd(params):
        return torch.optim.SGD(params, lr=0.1)

    def one_cycle(optimizer):
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.2, total_steps=78_200)

    rows.append(("schedule simulation, OneCycleLR, 78 200 steps", median_seconds(lambda: check_schedule(sgd, one_cycle, node, 78_200, "step"), args.repeats)))
    images = torch.rand(50_000, 3, 32, 32)
    labels = torch.randint(0, 10, (50_000,))
    rows.append(("pixel check, 50 000 × 3 × 32 × 32 float32 (614 MB)", median_seconds(lambda: check_pixels(images, "x"), args.repeats)))
    rows.append(("label check, 50 000 labels", median_seconds(lambda: check_labels(labels, 10, "y"), args.repeats)))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); medians of {args.repeats}")
    print("| what | seconds |\n| --- | --- |")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} |")
    print("\ncommand: PYTHONPATH=. python benchmarks/integrity_cost.py " + f"--repeats {args.repeats}" + (f" --folder {args.folder}" if args.folder else ""))


if __name__ == "__main__":
    main()
