"""Training throughput of two DDP processes against one, on the same total batch, on the CPU.

Runs the quickstart recipe (PGD-AT, K = 7, small CNN) through ``train.py fit`` three ways on
the same data: one process with batch B using all threads, the same with one thread, and two
DDP processes (gloo) with batch B/2 each and half the threads each — the same total batch per
optimiser step. Validation is
off; images per second are taken over the epochs after the first (process start, model
building and the first epoch's warm-up are left out) by a callback that times each epoch.

    PYTHONPATH=. python benchmarks/ddp_throughput.py [--batch 128] [--epochs 3] [--train-size 2048] [--repeats 3]

On a machine with GPUs, ``--accelerator gpu`` compares 1 and 2 GPUs the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl

REPO = Path(__file__).resolve().parents[1]


class EpochTimer(pl.Callback):
    """Appends each training epoch's wall time (rank zero) to a JSON-lines file."""

    def __init__(self, out_file: str) -> None:
        self.out_file = out_file
        self._start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            with open(self.out_file, "a") as f:
                f.write(json.dumps({"epoch": trainer.current_epoch, "seconds": time.perf_counter() - self._start}) + "\n")


def run(devices: int, batch: int, epochs: int, train_size: int, threads: int, accelerator: str) -> float:
    """Images per second over the epochs after the first."""
    with tempfile.TemporaryDirectory() as tmp:
        timing = Path(tmp) / "epochs.jsonl"
        args = [
            sys.executable, str(REPO / "train.py"), "fit", "--config", str(REPO / "configs" / "quickstart.yaml"),
            f"--trainer.accelerator={accelerator}", f"--trainer.devices={devices}",
            f"--trainer.max_epochs={epochs}", "--trainer.limit_val_batches=0", "--trainer.logger=false",
            f"--trainer.default_root_dir={tmp}",  # the recorded config.yaml goes there, not into the repository
            "--trainer.enable_checkpointing=false", "--trainer.callbacks=[]", "--trainer.enable_progress_bar=false",
            f"--trainer.callbacks+=benchmarks.ddp_throughput.EpochTimer", f"--trainer.callbacks.out_file={timing}",
            f"--data.init_args.train_size={train_size}", f"--data.init_args.batch_size={batch // devices}",
        ]
        if devices > 1:
            args.append("--trainer.strategy=ddp")
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(REPO), WANDB_MODE="disabled")
        subprocess.run(args, cwd=REPO, env=env, check=True, capture_output=True)
        seconds = [json.loads(line)["seconds"] for line in timing.read_text().splitlines()][1:]
    return train_size * len(seconds) / sum(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=128, help="total batch per optimiser step")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accelerator", default="cpu")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    settings = {
        f"1 process, {cores} threads": (1, cores),
        "1 process, 1 thread": (1, 1),
        f"2 DDP processes, {max(1, cores // 2)} thread(s) each": (2, max(1, cores // 2)),
    }
    results: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(args.repeats):  # alternate, so that load from elsewhere falls on both alike
        for name, (devices, threads) in settings.items():
            results[name].append(run(devices, args.batch, args.epochs, args.train_size, threads, args.accelerator))
    base = statistics.median(next(iter(results.values())))
    print(f"| setting (total batch {args.batch}) | images/s (median of {args.repeats}) | × 1 process |")
    print("| --- | --- | --- |")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.0f} | {median / base:.2f} |")
    print(f"\ncommand: PYTHONPATH=. python benchmarks/ddp_throughput.py --batch {args.batch} --epochs {args.epochs} "
          f"--train-size {args.train_size} --repeats {args.repeats} --accelerator {args.accelerator}")


if __name__ == "__main__":
    main()
