"""Bundle size and export time for the quickstart model and the CIFAR-10 PreAct ResNet-18.

Trains each recipe for one short epoch (the weights' values do not matter for size or time; the
CIFAR-10 recipe runs on CIFAR-shaped synthetic shapes, 3×32×32, 10 classes), then exports its last
checkpoint ``--repeats`` times, interleaved, and prints the median export time, the size of
every file of the bundle and the time to load the program back in plain torch.

    PYTHONPATH=. python benchmarks/export_bundle.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import train
from export import FILES, export_bundle

REPO = Path(__file__).resolve().parents[1]
CIFAR_SHAPED = {
    "class_path": "datamodules.SyntheticShapes",
    "init_args": {"image_size": 32, "channels": 3, "num_classes": 10, "train_size": 80, "val_size": 16,
                  "test_size": 16, "batch_size": 32, "num_workers": 0},
}  # fmt: skip


def train_briefly(recipe: str, root: Path, extra: list[str]) -> Path:
    cli = train.main(
        [
            "fit",
            "--config",
            str(REPO / "configs" / recipe),
            "--trainer.max_epochs=1",
            "--trainer.limit_val_batches=1",
            "--trainer.num_sanity_val_steps=0",
            "--trainer.logger=pytorch_lightning.loggers.CSVLogger",
            f"--trainer.logger.init_args.save_dir={root}",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            *extra,
        ]
    )
    return Path(cli.trainer.checkpoint_callback.last_model_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="robustlens-export-") as tmp:
        root = Path(tmp)
        checkpoints = {
            "quickstart (small_cnn, 1×28×28)": train_briefly(
                "quickstart.yaml", root / "q", ["--data.init_args.train_size=256", "--data.init_args.val_size=128"]
            ),
            "cifar10/pgd_at (preact_resnet18, 3×32×32)": train_briefly(
                "cifar10/pgd_at.yaml",
                root / "c",
                [
                    "--data=" + json.dumps(CIFAR_SHAPED),
                    "--model.objective.init_args.attack.init_args.steps=1",
                    "--model.eval_attack.init_args.steps=1",
                ],
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in checkpoints}
        loads: dict[str, list[float]] = {name: [] for name in checkpoints}
        bundles = {}
        for r in range(args.repeats):
            for i, (name, checkpoint) in enumerate(checkpoints.items()):
                bundle = export_bundle(checkpoint, root / f"bundle-{i}", overwrite=True)
                times[name].append(bundle.seconds)
                start = time.perf_counter()
                torch.export.load(bundle.directory / FILES["program"]).module()
                loads[name].append(time.perf_counter() - start)
                bundles[name] = (bundle, checkpoint.stat().st_size)

        columns = " | ".join(f"{f} (MB)" for f in sorted(FILES.values()))
        print(f"| model | checkpoint (MB) | bundle (MB) | {columns} | export (s) | load model.pt2 (s) |")
        print("|" + " --- |" * (5 + len(FILES)))
        for name, (bundle, ckpt_bytes) in bundles.items():
            sizes = " | ".join(f"{bundle.sizes[f] / 1e6:.3f}" for f in sorted(FILES.values()))
            print(
                f"| {name} | {ckpt_bytes / 1e6:.2f} | {bundle.total_bytes / 1e6:.2f} | {sizes} "
                f"| {statistics.median(times[name]):.2f} | {statistics.median(loads[name]):.2f} |"
            )
    threads = torch.get_num_threads()
    print(f"\nmedians of {args.repeats} interleaved exports on CPU (torch {torch.__version__}, {threads} threads)")
    print("command: PYTHONPATH=. " + " ".join([Path(sys.executable).name, *sys.argv]))


if __name__ == "__main__":
    main()
