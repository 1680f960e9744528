"""Pilot timing of the reproduction recipes: seconds per training step, extrapolated to the
full published protocol.

For each recipe (``ROWS``) and each thread count, a fresh process builds the recipe exactly as
``train.py fit`` does (real data, real network, objective and optimiser), with no logger, no
checkpoints and no validation, trains ``--steps`` steps (or fewer when ``--budget`` seconds run
out first, never fewer than ``MIN_TIMED`` timed steps after ``WARMUP`` untimed ones), and
clocks each step from one batch start to the next (data loading, forward, attack, backward,
optimiser, logging: the whole loop); a few hundred steps where a step is fast, at least
``MIN_TIMED`` where it takes tens of seconds. Then it validates one batch of ``eval_batch_size``
images with the recipe's evaluation attack and scales it to the validation images of one
epoch. It reports wall time and the process's CPU time: on a machine shared with other work the
wall time is inflated by waiting, while the CPU time of a single-threaded process is close to
what the step costs an idle core.

Full protocol = steps of the recipe (``max_steps``, or ``max_epochs`` × steps per epoch)
× seconds per step + epochs × validation seconds per epoch.

    PYTHONPATH=. python benchmarks/reproduction/pilot_timing.py --data-dir ~/robustlens-data
    PYTHONPATH=. python benchmarks/reproduction/pilot_timing.py --data-dir ~/robustlens-data \\
        --rows mnist/fgsm_rs_wong --threads 1 --steps 300 --out /tmp/one.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
ROWS: tuple[str, ...] = (
    "mnist/fgsm_rs_wong",
    "mnist/pgd_at_madry",
    "mnist/trades_zhang",
    "mnist/saliency_guided_ismail",
    "mnist/erm_ismail",
    "mnist/erm_chen",
    "mnist/ig_norm_chen",
    "mnist/ig_sum_norm_chen",
    "fashion_mnist/fgsm_rs_wong",
    "fashion_mnist/pgd_at_madry",
    "fashion_mnist/trades_zhang",
    "fashion_mnist/erm_chen",
    "fashion_mnist/ig_norm_chen",
    "fashion_mnist/ig_sum_norm_chen",
)
TRAIN_IMAGES = 60_000  # MNIST and Fashion-MNIST training splits, before the validation hold-out
WARMUP = 2
MIN_TIMED = 3


def _measure(
    row: str,
    data_dir: str,
    threads: int,
    steps: int,
    budget: float,
    warmup: int = WARMUP,
    min_timed: int = MIN_TIMED,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Train and validate briefly in this process; the figures of one (row, threads) pair."""
    import torch
    from pytorch_lightning import Callback

    import train

    torch.set_num_threads(threads)

    class StepClock(Callback):
        """Wall and CPU clock at every batch start; stops the fit when the budget is spent."""

        def __init__(self) -> None:
            self.marks: list[tuple[float, float]] = []

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            self.marks.append((time.perf_counter(), time.process_time()))
            timed = len(self.marks) - 1 - warmup
            if timed >= min_timed and self.marks[-1][0] - self.marks[warmup][0] > budget:
                trainer.should_stop = True

    load_before = os.getloadavg()[0]
    recipe = REPO / "configs" / f"{row}.yaml"
    scratch = tempfile.mkdtemp(prefix="pilot-")  # the resolved config lands here, not in the repository
    cli = train.main(
        [
            "--config", str(recipe),
            f"--data.init_args.data_dir={data_dir}",
            "--trainer.logger=false",
            f"--trainer.default_root_dir={scratch}",
            "--trainer.callbacks=[]",
            "--trainer.enable_checkpointing=false",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            "--trainer.num_sanity_val_steps=0",
            "--trainer.limit_val_batches=0",
            f"--trainer.max_steps={warmup + steps + 1}",
            "--trainer.max_epochs=-1",
            *(overrides or []),
        ],
        run=False,
    )  # fmt: skip
    clock = StepClock()
    cli.trainer.callbacks.append(clock)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    marks = clock.marks[warmup:]
    timed = len(marks) - 1
    wall = (marks[-1][0] - marks[0][0]) / timed
    cpu = (marks[-1][1] - marks[0][1]) / timed

    # Validation: one batch with the recipe's evaluation attack, scaled to one epoch's images.
    cli.trainer.limit_val_batches = 1
    dm = cli.datamodule
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    cli.trainer.validate(cli.model, datamodule=dm, verbose=False)
    val_wall, val_cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu

    shutil.rmtree(scratch, ignore_errors=True)
    config = yaml.safe_load(recipe.read_text())
    trainer_cfg, data_cfg = config["trainer"], config["data"]["init_args"]
    val_size = int(data_cfg["val_size"])
    batch = int(data_cfg["batch_size"])
    eval_batch = int(data_cfg["eval_batch_size"])
    steps_per_epoch = math.ceil((TRAIN_IMAGES - val_size) / batch)
    max_steps = int(trainer_cfg.get("max_steps", -1) or -1)
    total_steps = max_steps if max_steps > 0 else int(trainer_cfg["max_epochs"]) * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    limit_val = trainer_cfg.get("limit_val_batches")
    val_images = min(val_size, int(limit_val) * eval_batch) if limit_val else val_size
    scale = val_images / min(eval_batch, val_size)
    return {
        "row": row + "".join(f" [{o.removeprefix('--')}]" for o in overrides or []),
        "threads": threads,
        "timed_steps": timed,
        "warmup_steps": warmup,
        "batch_size": batch,
        "wall_s_per_step": wall,
        "cpu_s_per_step": cpu,
        "val_wall_s_per_epoch": val_wall * scale,
        "val_cpu_s_per_epoch": val_cpu * scale,
        "val_images_per_epoch": val_images,
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps,
        "epochs": epochs,
        "hours_wall": (total_steps * wall + epochs * val_wall * scale) / 3600,
        "hours_cpu": (total_steps * cpu + epochs * val_cpu * scale) / 3600,
        # CPU time shared evenly by the threads: the wall time on an idle machine (1 thread),
        # a lower bound of it (2 threads never scale perfectly).
        "hours_idle_estimate": (total_steps * cpu + epochs * val_cpu * scale) / 3600 / threads,
        "load_average": [load_before, os.getloadavg()[0]],
        "torch": str(torch.__version__),
    }


def _table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| recipe | threads | timed steps | steps/s (wall) | CPU s/step | val s/epoch (wall) | full steps | "
        "epochs | full hours (wall) | full hours (CPU / threads) | load avg |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        rows.append(
            f"| {r['row']} | {r['threads']} | {r['timed_steps']} | {1 / r['wall_s_per_step']:.2f} | "
            f"{r['cpu_s_per_step']:.3f} | {r['val_wall_s_per_epoch']:.1f} | {r['total_steps']} | {r['epochs']} | "
            f"{r['hours_wall']:.2f} | {r['hours_idle_estimate']:.2f} | "
            f"{r['load_average'][0]:.1f}–{r['load_average'][1]:.1f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="folder holding MNIST/raw and FashionMNIST/raw")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS, metavar="ROW")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--steps", type=int, default=300, help="timed steps at most")
    parser.add_argument("--budget", type=float, default=90.0, help="seconds of timed steps at most, per measurement")
    parser.add_argument("--warmup", type=int, default=WARMUP, help="untimed steps first")
    parser.add_argument("--min-timed", type=int, default=MIN_TIMED, help="timed steps at least, whatever the budget")
    parser.add_argument(
        "--set", action="append", default=[], metavar="OVERRIDE",
        help="a command-line override of the recipe, e.g. --set=--model.backbone=wong2020_mnist (repeatable; named "
        "in the row)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help="append the results (JSON lines) to this file")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    if args.one:
        result = _measure(
            args.rows[0], args.data_dir, args.threads[0], args.steps, args.budget, args.warmup, args.min_timed, args.set
        )
        print("RESULT " + json.dumps(result), flush=True)
        return
    results = []
    for row in args.rows:
        for threads in args.threads:
            env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline",
                   "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}  # fmt: skip
            command = [sys.executable, __file__, "--one", "--data-dir", args.data_dir, "--rows", row,
                       "--threads", str(threads), "--steps", str(args.steps), "--budget", str(args.budget),
                       "--warmup", str(args.warmup), "--min-timed", str(args.min_timed),
                       *(f"--set={o}" for o in args.set)]  # fmt: skip
            done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode != 0 or not lines:
                raise SystemExit(f"{row} with {threads} thread(s) failed:\n{done.stderr[-3000:]}")
            result = json.loads(lines[-1][len("RESULT ") :])
            results.append(result)
            print(_table([result]).splitlines()[-1], flush=True)
            if args.out:
                with open(args.out, "a") as handle:
                    handle.write(json.dumps(result) + "\n")
    print()
    print(_table(results))
    print()
    print("command: PYTHONPATH=. python benchmarks/reproduction/pilot_timing.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
