"""Robust accuracy of one trained model under every attack robustlens offers, and what each costs.

On the test split of the checkpoint's own dataset (its recorded recipe), at the recipe's
evaluation radius, each attack run on the examples classified correctly (as the evaluation core
counts: a clean error is an error under attack): clean accuracy; PGD-10 on the cross-entropy with the
recipe's own evaluation attack (what ``val/acc_pgd`` logs); PGD-40 (step 2.5 ε / 40, seeded
random start) on the cross-entropy, the margin and the DLR loss; APGD-CE alone (the first stage
of AutoAttack); AutoAttack fast (APGD-CE, APGD-T) and standard (+ FAB-T, Square), with
per-example seeds (the default) and with the authors' per-batch seeding (Square batched).

    PYTHONPATH=. python benchmarks/autoattack_accuracy.py --ckpt_path runs/robustlens/<run>/checkpoints/best-....ckpt

Prints a Markdown table (accuracy, examples left standing, seconds per 100 test images, wall
and process CPU time) and the command. Run by hand, never in CI; the machine load is printed
because a shared machine stretches the wall times.
"""

from __future__ import annotations

import argparse
import inspect
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable

import torch

from attacks import PGD, AutoAttack, EvaluationAttack
from report import ReportSettings, plan_report


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", required=True, help="a checkpoint of a robustlens run")
    parser.add_argument("--examples", type=int, default=None, help="test examples (default: the whole test split, at most 1000)")
    parser.add_argument("--eps", type=float, default=None, help="radius (default: the recipe's evaluation ε)")
    parser.add_argument("--batch_size", type=int, default=250, help="examples per attack call (the authors' default)")
    parser.add_argument("--skip", nargs="*", default=[], help="rows to leave out, by name")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    return parser.parse_args(argv)


def _rows(recipe_attack: PGD, eps: float) -> list[tuple[str, Callable[[], EvaluationAttack]]]:
    pgd40 = dict(eps=eps, step_size=2.5 * eps / 40, steps=40, seed=0)
    return [
        ("PGD-10, cross-entropy (the recipe's eval_attack: val/acc_pgd)", lambda: recipe_attack),
        ("PGD-40, cross-entropy", lambda: PGD(**pgd40)),  # type: ignore[arg-type]
        ("PGD-40, margin (Carlini–Wagner)", lambda: PGD(**pgd40, loss="margin")),  # type: ignore[arg-type]
        ("PGD-40, DLR", lambda: PGD(**pgd40, loss="dlr")),  # type: ignore[arg-type]
        ("AutoAttack fast (APGD-CE, APGD-T)", lambda: AutoAttack(eps=eps, version="fast")),
        ("AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square)", lambda: AutoAttack(eps=eps, version="standard")),
        (
            "AutoAttack standard, the authors' per-batch seeding",
            lambda: AutoAttack(eps=eps, version="standard", seeding="batch"),
        ),
    ]


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = ReportSettings(
        ckpt_path=args.ckpt_path, out_dir="/nonexistent/unused", accuracy_examples=args.examples,
        methods=["edge"], metrics=["deletion_auc"], num_examples=1, figure_examples=1, progress=False,
    )  # fmt: skip
    plan = plan_report(settings)  # the recorded datamodule and the model, checked
    recorded = (plan.source.eval_attack or {}).get("init_args") or {}
    eps = args.eps if args.eps is not None else float(recorded.get("eps", 8 / 255))
    accepted = inspect.signature(PGD.__init__).parameters
    recipe_attack = PGD(**{k: v for k, v in recorded.items() if k in accepted})
    recipe_attack = recipe_attack.at_eps(eps)
    examples = plan.accuracy_examples.to(plan.device)
    model = plan.model
    n = len(examples)

    print(f"# PYTHONPATH=. python benchmarks/{shlex.join(['autoattack_accuracy.py', *argv])}")
    print(
        f"# torch {torch.__version__}, {platform.machine()}, threads={torch.get_num_threads()}, device={plan.device}; "
        f"{n} test images of {type(plan.datamodule).__name__} {tuple(plan.datamodule.input_shape)}, "
        f"L∞ ε = {eps:g}; load average before: {os.getloadavg()[0]:.1f}"
    )
    print()
    print("| attack | robust accuracy % | standing | s / 100 images (wall) | s / 100 images (CPU) |")
    print("|---|---|---|---|---|")
    with torch.no_grad():
        clean = int((model(examples.x).argmax(1) == examples.y).sum())
    print(f"| clean | {100 * clean / n:.1f} | {clean} / {n} | | |", flush=True)
    with torch.no_grad():
        right = (model(examples.x).argmax(1) == examples.y).nonzero().squeeze(1)
    for label, build in _rows(recipe_attack, eps):
        if label in args.skip:
            continue
        attack = build()
        standing, first_stage, first_seconds = 0, 0, 0.0
        wall, cpu = time.perf_counter(), time.process_time()
        for lo in range(0, len(right), args.batch_size):
            index = right[lo : lo + args.batch_size]
            x_adv = attack(model, examples.x[index], examples.y[index])
            with torch.no_grad():
                standing += int((model(x_adv).argmax(1) == examples.y[index]).sum())
            if isinstance(attack, AutoAttack) and attack.stages:
                first_stage += attack.stages[0].robust
                first_seconds += attack.stages[0].seconds
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(
            f"| {label} | {100 * standing / n:.1f} | {standing} / {n} | {100 * wall / n:.2f} | {100 * cpu / n:.2f} |",
            flush=True,
        )
        if isinstance(attack, AutoAttack) and attack.version == "fast":
            print(f"| APGD-CE alone (AutoAttack's first stage) | {100 * first_stage / n:.1f} | {first_stage} / {n} | "
                  f"{100 * first_seconds / n:.2f} | |", flush=True)  # fmt: skip
    print()
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
