"""Seconds per 100 images of each attribution method on a checkpoint's test examples.

Every registered method except the two controls, with the report's options
(:data:`report.plan.DEFAULT_METHOD_OPTIONS`), plus occlusion with 1×1 windows (occlusion-1)
and with non-overlapping 4×4 windows. Each row is the median of ``--repeats`` calls on the same
``--n`` examples (the report's test draw), after one untimed call; the target is the predicted
class. Side by side in one process, so the ratios between rows are the figures to quote.

    PYTHONPATH=. python benchmarks/attribution_speed.py --ckpt_path runs/robustlens/<run>/checkpoints/best-....ckpt --threads 1

Run by hand, never in CI; say that the machine was shared when it was.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import tempfile

import torch

from attributions import attribution_names, build_attribution
from benchmarks.timing import median_seconds
from report import ReportSettings, plan_report
from report.plan import DEFAULT_METHOD_OPTIONS

#: rows beyond the registered names: (label, name, options)
EXTRA_ROWS: tuple[tuple[str, str, dict], ...] = (
    ("occlusion (window 1, stride 1)", "occlusion", {"window": 1, "stride": 1}),
    ("occlusion (window 4, stride 4)", "occlusion", {"window": 4, "stride": 4}),
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", help="a checkpoint (or give --bundle)")
    parser.add_argument("--bundle")
    parser.add_argument("--n", type=int, default=100, help="test examples per call")
    parser.add_argument("--methods", nargs="+", default=None, help="default: every registered method but the controls")
    parser.add_argument("--repeats", type=int, default=3, help="medians over this many calls")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = ReportSettings(
        ckpt_path=args.ckpt_path, bundle=args.bundle, out_dir=tempfile.mkdtemp(prefix="attribution-speed-") + "/unused",
        num_examples=args.n, figure_examples=1, methods=["saliency"], metrics=["deletion_auc"],
    )  # fmt: skip
    plan = plan_report(settings)
    model, x = plan.model, plan.examples.x.to(plan.device)
    with torch.no_grad():
        target = model(x).argmax(dim=1)
    names = args.methods or [n for n in attribution_names() if n not in ("edge", "random")]
    rows = [(name, name, DEFAULT_METHOD_OPTIONS.get(name, {})) for name in names]
    rows += [row for row in EXTRA_ROWS if args.methods is None]

    print(f"# PYTHONPATH=. python benchmarks/{shlex.join(['attribution_speed.py', *argv])}")
    print(
        f"# torch {torch.__version__}, {platform.machine()}, threads={torch.get_num_threads()}, device={plan.device}, "
        f"{len(x)} examples of {type(plan.datamodule).__name__} {tuple(plan.datamodule.input_shape)}, "
        f"median of {args.repeats} after one untimed call"
    )
    print()
    print("| method | options | s per 100 images |")
    print("|---|---|---|")
    for label, name, options in rows:
        method = build_attribution(name, **options)
        method(model, x, target)  # untimed: first-call allocations
        seconds = median_seconds(lambda: method(model, x, target), args.repeats)
        shown = ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults"
        print(f"| {label} | {shown} | {seconds * 100 / len(x):.2f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
