"""Seconds per explanation metric on one batch, and how they scale with the batch size.

Model: the quickstart CNN (``small_cnn``, width 16, hidden 128), untrained, in eval mode, on
the CPU; inputs: synthetic shapes (with masks) of 1×28×28 and 3×32×32; method: saliency by
default. Every metric is timed alone through ``compute_metric`` (so Φ(x) is included in each
row; ``compute_metrics`` shares it and the perturbed attributions between metrics), with the
registry's default options except the attack steps (``--attack-steps``). Batch sizes are
interleaved within every repeat, and the table shows medians.

    PYTHONPATH=. python benchmarks/metrics_speed.py
    PYTHONPATH=. python benchmarks/metrics_speed.py --shapes 1x28x28 --batch-sizes 256 --metrics infidelity

Run by hand, never in CI. On a shared machine, state that the figures came from one.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import time
from typing import Any

import torch

from attacks import TopKExplanationAttack
from attributions import attribution_names, build_attribution
from datamodules import generate_shapes
from lightning_modules import build_model
from metrics import compute_metric, compute_metrics, metric_names


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=["1x28x28", "3x32x32"], help="C×H×W of the inputs")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 128, 256])
    parser.add_argument("--metrics", nargs="+", default=list(metric_names()), choices=metric_names())
    parser.add_argument("--method", default="saliency", choices=attribution_names())
    parser.add_argument("--attack-steps", type=int, default=10, help="steps of pgd and topk_attack (default of the registry: 10 and 100)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--loop-metrics", nargs="*", default=[], choices=metric_names(),
        help="also time these one example at a time (B calls of size 1) against one batched call, "
        "at the first batch size",
    )
    return parser.parse_args(argv)


def options_for(name: str, attack_steps: int) -> dict[str, Any]:
    if name.endswith("@pgd") or name.endswith("@topk_attack"):
        return {"steps": attack_steps}
    return {}


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    method = build_attribution(args.method)
    groups = {}  # one compute_metrics call for the four similarities of each perturbation
    for perturbation in ("noise", "pgd", "topk_attack"):
        names = [n for n in args.metrics if n.endswith("@" + perturbation)]
        if len(names) > 1:
            groups[f"[{len(names)} shared]@{perturbation}"] = names
    rows = list(args.metrics) + list(groups)

    print(f"# PYTHONPATH=. python benchmarks/metrics_speed.py {shlex.join(argv)}".rstrip())
    print(
        f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, threads={torch.get_num_threads()}, "
        f"method={args.method}, attack steps={args.attack_steps}, median of {args.repeats}"
    )
    for shape_text in args.shapes:
        c, h, w = (int(v) for v in shape_text.split("x"))
        model = build_model(
            "small_cnn", 10, (c, h, w), (0.5,) * c, (0.25,) * c, backbone_kwargs={"width": 16, "hidden": 128}
        ).eval()
        data = generate_shapes(max(args.batch_sizes), 10, h, c, seed=0, spurious_rate=1.0)
        times: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.repeats):
            for b in args.batch_sizes:
                x, y = data.images[:b], data.labels[:b]
                masks, spurious = data.masks[:b], data.spurious_masks[:b]
                for name in rows:
                    start = time.perf_counter()
                    if name in groups:
                        compute_metrics(
                            groups[name], model, x, y, method, masks, spurious,
                            options={n: options_for(n, args.attack_steps) for n in groups[name]},
                        )
                    else:
                        compute_metric(name, model, x, y, method, masks, spurious, **options_for(name, args.attack_steps))
                    times.setdefault((name, b), []).append(time.perf_counter() - start)
        # How many steps keep the label before its first flip (the attack steps on after it).
        result = TopKExplanationAttack(steps=args.attack_steps).attack(model, data.images[: args.batch_sizes[-1]], method)
        before_flip = torch.where(result.first_flip > 0, result.first_flip - 1, args.attack_steps)
        kept = before_flip.float().mean().item()

        sizes = args.batch_sizes
        header = " | ".join(f"B={b} s" for b in sizes)
        print(f"\n## {shape_text}  (top-k attack: {kept:.1f} of {args.attack_steps} steps before the first label flip on average)")
        print(f"| metric | {header} | ms/example at B={sizes[-1]} | t(B={sizes[-1]}) / t(B={sizes[0]}) |")
        print("|---" * (len(sizes) + 3) + "|")
        for name in rows:
            medians = [statistics.median(times[(name, b)]) for b in sizes]
            per_example = 1000 * medians[-1] / sizes[-1]
            ratio = medians[-1] / medians[0] if medians[0] > 0 else float("nan")
            cells = " | ".join(f"{m:.3f}" for m in medians)
            print(f"| {name} | {cells} | {per_example:.2f} | {ratio:.2f} |")
        if args.loop_metrics:
            print_loop_comparison(args, model, data, method)
    if len(args.batch_sizes) > 1:
        ratio = args.batch_sizes[-1] / args.batch_sizes[0]
        print(f"\n# a time ratio of {ratio:.0f} is linear in B; below it, fixed costs are amortised.")


def print_loop_comparison(args: argparse.Namespace, model: torch.nn.Module, data: Any, method: Any) -> None:
    """Batched call vs a loop of single-example calls on the same examples (same ids, same noise)."""
    b = args.batch_sizes[0]
    x, y, masks, spurious = data.images[:b], data.labels[:b], data.masks[:b], data.spurious_masks[:b]
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for name in args.loop_metrics:
            options = options_for(name, args.attack_steps)
            start = time.perf_counter()
            compute_metric(name, model, x, y, method, masks, spurious, example_ids=torch.arange(b), **options)
            times.setdefault((name, "batched"), []).append(time.perf_counter() - start)
            start = time.perf_counter()
            for i in range(b):
                row = slice(i, i + 1)
                compute_metric(
                    name, model, x[row], y[row], method, masks[row], spurious[row],
                    example_ids=torch.tensor([i]), **options,
                )
            times.setdefault((name, "loop"), []).append(time.perf_counter() - start)
    print(f"\n| metric at B={b} | batched s | one example at a time s | loop / batched |")
    print("|---|---|---|---|")
    for name in args.loop_metrics:
        batched = statistics.median(times[(name, "batched")])
        loop = statistics.median(times[(name, "loop")])
        print(f"| {name} | {batched:.3f} | {loop:.3f} | {loop / batched:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
