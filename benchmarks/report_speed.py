"""Where the time of ``train.py report`` goes: seconds per method × metric on one batch.

The report computes the metrics of a method together (:func:`metrics.compute_metrics` shares
Φ(x) and perturbed attributions) and records only seconds per method (``report.json``,
``seconds``). This script splits that time: for each method, Φ(x) alone, then each metric alone
given Φ(x) (so the Φ(x) column is not counted in the metric columns), on one batch of test
examples, with the report's own settings (defaults unless given; the same options as the
command, through :func:`report.plan_report`). Then each attack of the accuracy curve on the
same batch.

    PYTHONPATH=. python benchmarks/report_speed.py --ckpt_path runs/robustlens/<run>/checkpoints/best-....ckpt

Run by hand, never in CI; say that the machine was shared when it was.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import tempfile

import torch

from benchmarks.timing import median_seconds
from metrics import compute_metrics
from report import ReportSettings, plan_report


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", help="a checkpoint (or give --bundle)")
    parser.add_argument("--bundle")
    parser.add_argument("--batch", type=int, default=64, help="examples in the timed batch (the report's batch_size)")
    parser.add_argument("--methods", nargs="+", default=None, help="default: the report's")
    parser.add_argument("--metrics", nargs="+", default=None, help="default: the report's for the dataset")
    parser.add_argument("--repeats", type=int, default=1, help="medians over this many runs of each cell")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = ReportSettings(
        ckpt_path=args.ckpt_path,
        bundle=args.bundle,
        out_dir=tempfile.mkdtemp(prefix="report-speed-") + "/unused",
        num_examples=args.batch,
        batch_size=args.batch,
        figure_examples=1,
        **({"methods": args.methods} if args.methods else {}),
        **({"metrics": args.metrics} if args.metrics else {}),
    )
    plan = plan_report(settings)
    batch = plan.examples.to(plan.device)
    x, ids = batch.x, batch.indices
    model = plan.model
    with torch.no_grad():
        target = model(x).argmax(dim=1)

    print(f"# PYTHONPATH=. python benchmarks/{shlex.join(['report_speed.py', *argv])}")
    print(
        f"# torch {torch.__version__}, {platform.machine()}, threads={torch.get_num_threads()}, "
        f"device={plan.device}, batch={len(batch)} of {type(plan.datamodule).__name__} "
        f"{tuple(plan.datamodule.input_shape)}, median of {args.repeats}"
    )
    print()
    print("| method | Φ(x) s | " + " | ".join(plan.metrics) + " | sum s |")
    print("|---" * (len(plan.metrics) + 3) + "|")
    column_totals = [0.0] * (len(plan.metrics) + 1)
    for name, method in plan.methods.items():
        phi = method(model, x, target)
        row = [median_seconds(lambda: method(model, x, target), args.repeats)]
        for metric in plan.metrics:

            def one() -> object:
                return compute_metrics(
                    [metric], model, x, target, method, batch.mask, batch.spurious_mask,
                    options={metric: plan.metric_options[metric]}, example_ids=ids, attribution=phi,
                )  # fmt: skip

            row.append(median_seconds(one, args.repeats))
        column_totals = [a + b for a, b in zip(column_totals, row)]
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in row) + f" | {sum(row):.1f} |")
    print("| all methods | " + " | ".join(f"{v:.1f}" for v in column_totals) + f" | {sum(column_totals):.1f} |")
    print()
    for template in plan.attacks:
        seconds = []
        for eps in plan.eps[1:]:
            attack = template.at_eps(eps)
            seconds.append(median_seconds(lambda: attack(model, x, batch.y), args.repeats))
        print(
            f"accuracy curve: {template.name} on this batch at {len(seconds)} ε > 0: {sum(seconds):.2f} s "
            f"({sum(seconds) / len(batch) * 1000:.1f} ms per example for the whole grid)"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
