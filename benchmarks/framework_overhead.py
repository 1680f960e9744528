"""Framework overhead: one epoch of PGD-AT through ``train.py`` against a hand-written PyTorch loop.

Both sides do the same computation: the quickstart model (``small_cnn`` width 16, hidden 128,
1×28×28 synthetic shapes, 4 classes, 4 000 training images, batch 64, 63 steps), the same
initial weights, the same data order (the permutation the project's loader draws for epoch 0),
PGD-10 under L∞ ε = 0.1 (step 0.025, random start, model in eval mode during the attack, as
``attacks.PGD``), cross-entropy at the adversarial example, Adam (lr 0.002). The script first
checks that the two give the same weights after a few steps from the same random state; then
it times, alternating in a shuffled order each round:

- ``train.py (recipe)``: ``train.main`` on ``configs/quickstart.yaml`` with the PGD-10
  objective, one epoch, as the recipe configures it otherwise (W&B offline logger, checkpoint
  callbacks, progress bar) but without validation (the comparison is the training epoch);
- ``train.py (lean)``: the same without logger, checkpoints and progress bar;
- ``hand-written``: a plain loop over tensors, with its own PGD, no Lightning, no robustlens
  objective or attack class.

For the two ``train.py`` rows it reports the epoch (from ``on_train_epoch_start`` to
``on_train_epoch_end``) and the whole ``trainer.fit`` call (loggers, checkpoint writing, the
loop's set-up); command-line parsing and building the objects are outside both. Medians over
rounds and the ratio to the hand-written loop's median.

    PYTHONPATH=. python benchmarks/framework_overhead.py [--rounds 5] [--steps 10] [--profile]

``--profile`` adds a cProfile of one lean epoch (top functions by own time) to find where any
extra time goes. Run by hand, never in CI; the machine's load goes into the ratios, which is why
the runs alternate.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import platform
import pstats
import random
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pytorch_lightning import Callback

ROOT = Path(__file__).resolve().parents[1]
RUN_DIR = ROOT / "benchmarks" / "_runs" / "framework_overhead"
SEED = 0
EPS, LR = 0.1, 0.002


class EpochTimer(Callback):
    """Seconds of the training epoch, from its first hook to its last."""

    def __init__(self) -> None:
        self.seconds = float("nan")
        self._start = 0.0

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.seconds = time.perf_counter() - self._start


class SetRandomState(Callback):
    """Put the global RNG in a given state when training starts (for the equivalence check)."""

    def __init__(self, state: torch.Tensor) -> None:
        self.state = state

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        torch.set_rng_state(self.state)


def cli_args(steps: int, lean: bool, max_steps: int = -1) -> list[str]:
    attack = {"class_path": "attacks.PGD", "init_args": {"eps": EPS, "step_size": 2.5 * EPS / steps, "steps": steps}}
    # Every init_arg is spelled out: an override of the same class merges with the recipe's values.
    objective = {
        "class_path": "losses.PGDAdversarialTraining",
        "init_args": {"attack": attack, "clean_weight": 0.0, "eps_warmup_steps": 0},
    }
    args = [
        "--config", "configs/quickstart.yaml",
        f"--seed_everything={SEED}",
        "--trainer.max_epochs=1",
        f"--trainer.max_steps={max_steps}",
        "--trainer.limit_val_batches=0",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.accelerator=cpu",
        f"--trainer.default_root_dir={RUN_DIR}",
        f"--trainer.logger.init_args.save_dir={RUN_DIR}",
        f"--model.optimizer.init_args.lr={LR}",
        "--model.objective", json.dumps(objective),
    ]
    if lean:
        args += [
            "--trainer.logger=false",
            "--trainer.callbacks=[]",
            "--trainer.enable_checkpointing=false",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
        ]
    return args


def build_cli(steps: int, lean: bool, max_steps: int = -1) -> Any:
    import train

    cli = train.main(cli_args(steps, lean, max_steps), run=False)
    cli.datamodule.setup("fit")  # the synthetic images are drawn here, outside the timing
    return cli


def run_cli(steps: int, lean: bool) -> tuple[float, float]:
    """(epoch seconds, trainer.fit seconds) of one epoch through the command line."""
    import train

    cli = build_cli(steps, lean)
    timer = EpochTimer()
    cli.trainer.callbacks.append(timer)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    fit_seconds = time.perf_counter() - start
    train._finish_wandb()
    return timer.seconds, fit_seconds


class HandWritten:
    """The same training as plain PyTorch: tensors, a permutation, PGD and Adam."""

    def __init__(self, steps: int) -> None:
        cli = build_cli(steps, lean=True)
        data = cli.datamodule
        dataset = data.split_dataset("train")
        self.x = torch.stack([dataset[i][0] for i in range(len(dataset))])  # (N, 1, 28, 28)
        self.y = torch.stack([torch.as_tensor(dataset[i][1]) for i in range(len(dataset))])  # (N,)
        self.batch_size = data.batch_size
        self.initial_state = {k: v.clone() for k, v in cli.model.model.state_dict().items()}
        self.model = cli.model.model  # the same architecture (Normalize + SmallCNN); weights reset per run
        self.steps = steps
        self.step_size = 2.5 * EPS / steps

    def pgd(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        model = self.model
        model.eval()
        x_adv = (x + (2.0 * torch.rand_like(x) - 1.0) * EPS).clamp(0.0, 1.0)
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(model(x_adv), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, [x_adv])
            x_adv = x_adv.detach() + self.step_size * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - EPS), x + EPS).clamp(0.0, 1.0)
        model.train()
        return x_adv.detach()

    def epoch(self, max_steps: int | None = None, rng_state: torch.Tensor | None = None) -> float:
        self.model.load_state_dict(self.initial_state)
        optimizer = torch.optim.Adam(self.model.parameters(), lr=LR)
        if rng_state is not None:
            torch.set_rng_state(rng_state)
        start = time.perf_counter()
        n = self.y.shape[0]
        # The order the project's loader (EpochSeededSampler) draws for epoch 0 of seed SEED.
        order = torch.randperm(n, generator=torch.Generator().manual_seed(SEED * 1_000_003 + 0))
        self.model.train()
        for step, begin in enumerate(range(0, n, self.batch_size)):
            if max_steps is not None and step >= max_steps:
                break
            index = order[begin : begin + self.batch_size]
            x, y = self.x[index], self.y[index]
            x_adv = self.pgd(x, y)
            loss = F.cross_entropy(self.model(x_adv), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return time.perf_counter() - start


def check_same_computation(hand: HandWritten, steps: int, check_steps: int = 5) -> float:
    """Largest weight difference after ``check_steps`` steps of both from the same random state."""
    state = torch.get_rng_state()
    cli = build_cli(steps, lean=True, max_steps=check_steps)
    cli.model.model.load_state_dict(hand.initial_state)
    cli.trainer.callbacks.append(SetRandomState(state))
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    hand.epoch(max_steps=check_steps, rng_state=state)
    theirs = cli.model.model.state_dict()
    return max(float((v - theirs[k]).abs().max()) for k, v in hand.model.state_dict().items())


def profile_lean_epoch(steps: int, top: int = 25) -> str:
    cli = build_cli(steps, lean=True)
    profiler = cProfile.Profile()
    profiler.enable()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="K of PGD-K")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of one lean epoch")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    print(f"command: PYTHONPATH=. python benchmarks/framework_overhead.py {shlex.join(argv)}".rstrip(), flush=True)

    hand = HandWritten(args.steps)
    difference = check_same_computation(hand, args.steps)
    print(f"same computation: largest weight difference after 5 steps from the same state = {difference:.2e}", flush=True)

    rows = {"hand-written": [], "train.py (lean)": [], "train.py (recipe)": []}
    fits: dict[str, list[float]] = {"train.py (lean)": [], "train.py (recipe)": []}
    shuffle = random.Random(0)
    for round_index in range(args.rounds):
        order = list(rows)
        shuffle.shuffle(order)
        for name in order:
            if name == "hand-written":
                rows[name].append(hand.epoch())
            else:
                epoch, fit = run_cli(args.steps, lean=name.endswith("(lean)"))
                rows[name].append(epoch)
                fits[name].append(fit)
        print(f"round {round_index + 1}: " + ", ".join(f"{n} {rows[n][-1]:.2f}s" for n in rows), flush=True)

    base = statistics.median(rows["hand-written"])
    print(
        f"\ntorch {torch.__version__}, {platform.machine()}, {args.threads} thread(s), PGD-{args.steps} AT, "
        f"1 epoch = {-(-hand.y.shape[0] // hand.batch_size)} steps of batch {hand.batch_size}; "
        f"medians of {args.rounds} alternating rounds"
    )
    print("| loop | epoch s | × hand-written | trainer.fit s | × hand-written |")
    print("|---|---|---|---|---|")
    for name, times in rows.items():
        epoch = statistics.median(times)
        fit_cells = "— | —"
        if name in fits:
            fit = statistics.median(fits[name])
            fit_cells = f"{fit:.2f} | {fit / base:.3f}"
        print(f"| {name} | {epoch:.2f} | {epoch / base:.3f} | {fit_cells} |")
    if args.profile:
        print("\ncProfile of one lean epoch (top functions by own time):")
        print(profile_lean_epoch(args.steps))


if __name__ == "__main__":
    main(sys.argv[1:])
