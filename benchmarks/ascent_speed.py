"""PGD through the shared ascent loop against the loop it replaced, side by side, on the CPU.

The quickstart model (small_cnn, width 16, hidden 128, 1×28×28 synthetic shapes, 4 classes),
L∞ PGD-K (ε = 0.1, α = 2.5ε/K, random start) on one batch: :meth:`attacks.PGD.perturb` (the
loop of :mod:`attacks.ascent`) and a copy of the inline loop PGD ran before, timed interleaved
(round-robin in a shuffled order) so that load from other processes falls on both alike. The
table gives medians and their ratio.

    PYTHONPATH=. python benchmarks/ascent_speed.py [--batch-size 128] [--steps 10] [--rounds 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import shlex
import statistics
import sys
import time

import torch
from torch import Tensor, nn

from attacks import PGD, per_example_cross_entropy
from common.modes import module_mode
from datamodules import generate_shapes
from lightning_modules import build_model


def inline_pgd(attack: PGD, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """PGD's loop as it was written inline before :mod:`attacks.ascent` (one restart, CE)."""
    with torch.enable_grad(), module_mode(model, attack.model_mode):
        x_adv = attack.initial_point(x)
        for _ in range(attack.steps):
            x_adv.requires_grad_(True)
            loss = per_example_cross_entropy(model(x_adv), y)
            (grad,) = torch.autograd.grad(loss.sum(), [x_adv])
            x_adv = attack.threat.project(x_adv.detach() + attack.threat.step(grad, attack.step_size), x)
        return x_adv.detach()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model("small_cnn", 4, (1, 28, 28), (0.5,), (0.25,), backbone_kwargs={"width": 16, "hidden": 128})
    data = generate_shapes(args.batch_size, 4, 28, 1, seed=0)
    x, y = data.images, data.labels
    attack = PGD(eps=0.1, step_size=0.25 / args.steps, steps=args.steps)
    runs = {"inline loop (before)": lambda: inline_pgd(attack, model, x, y), "attacks.ascent (PGD.perturb)": lambda: attack(model, x, y)}
    for run in runs.values():  # warm-up
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    shuffle = random.Random(0)
    for _ in range(args.rounds):
        shuffle.shuffle(order)
        for name in order:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = medians["inline loop (before)"]
    print("command: PYTHONPATH=. python benchmarks/ascent_speed.py " + shlex.join(sys.argv[1:] if argv is None else argv))
    print(f"torch {torch.__version__}, CPU, {args.threads} thread(s), {args.rounds} interleaved rounds, medians; "
          f"PGD-{args.steps} L∞ on small_cnn w16 h128, batch {args.batch_size}")
    print("| loop | ms/attack | × before |")
    print("|---|---|---|")
    for name, median in medians.items():
        print(f"| {name} | {1000 * median:.1f} | {median / base:.3f} |")


if __name__ == "__main__":
    main()
