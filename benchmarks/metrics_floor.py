"""Sampled explanation metrics against their pass-count floor, unstacked and stacked, and Quantus.

Every sampled metric must run its model (or its attribution method) on n perturbed copies of
the batch; its floor is the time of exactly those passes, at the batch sizes it makes them
(forward only, or forward and the input gradient for saliency), measured in the same run on
random inputs. Each metric is timed twice in the same rounds: unstacked (M = B: one call per
sample, as before stacking) and stacked (M from ``--budget``, default the library's), each beside
its own floor, and Quantus 0.6 doing the same number of passes on the same model, batch and
saliency (Quantus gets robustlens' saliency as its ``explain_func``, so both pay the same
attribution). Φ(x) is given to every metric (Quantus gets it as ``a_batch``); only the sampled
passes are timed. Model: the quickstart CNN (``small_cnn``, width 16, hidden 128), untrained,
eval mode; inputs: synthetic shapes 1×28×28, B = 128; one torch thread; rounds interleave every
variant, and the table shows medians.

    PYTHONPATH=. python benchmarks/metrics_floor.py
    PYTHONPATH=. python benchmarks/metrics_floor.py --rounds 5 --budget 4096 --out benchmarks/metrics_floor.md

Run by hand, never in CI; Quantus is imported here only.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from attributions import Saliency
from datamodules import generate_shapes
from lightning_modules import build_model
from metrics.functional import (
    avg_sensitivity,
    deletion_auc,
    explanation_robustness,
    infidelity,
    insertion_auc,
    local_lipschitz,
    max_sensitivity,
    sensitivity_n,
)
from metrics.functional.stacking import default_pass_images, stacked_passes

STEPS = 28  # deletion/insertion steps: Quantus' PixelFlipping takes 784 / 28 = 28 pixels per step


@dataclass(frozen=True)
class Case:
    """One metric: its robustlens call, its passes, and Quantus' call for the same work."""

    name: str
    settings: str
    blocks: int  # blocks of B rows the metric evaluates
    backward: bool  # passes are forward + input gradient (attribution) rather than forward only
    run: Callable[[int], Any]  # budget M -> scores
    quantus: Callable[[], Any] | None
    quantus_note: str


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--budget", type=int, default=None, help="M of the stacked runs (default: the library's)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-quantus", action="store_true")
    parser.add_argument("--only", nargs="*", default=None, help="metric names to run")
    parser.add_argument("--out", default=None, help="also write the table to this markdown file")
    return parser.parse_args(argv)


def floor_pass(model: nn.Module, x: Tensor, backward: bool) -> None:
    """One pass of the kind a metric makes: forward, or forward and the input gradient."""
    if backward:
        x = x.detach().requires_grad_(True)
        torch.autograd.grad(model(x)[:, 0].sum(), [x])
    else:
        with torch.no_grad():
            model(x)


def floor_seconds(model: nn.Module, pool: Tensor, case: Case, b: int, budget: int) -> float:
    """The time of the metric's passes alone: the same row counts per pass, random inputs."""
    start = time.perf_counter()
    for blocks in stacked_passes(case.blocks, b, budget):
        rows = sum(block.examples.stop - block.examples.start for block in blocks)
        floor_pass(model, pool[:rows], case.backward)
    return time.perf_counter() - start


def quantus_cases(model: nn.Module, x: Tensor, y: Tensor, phi: Tensor, method: Saliency) -> dict[str, Callable[[], Any]]:
    import quantus  # noqa: PLC0415 (a reference library: imported only here)

    xb, yb, ab = x.numpy(), y.numpy(), phi.numpy()

    def explain(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: Any) -> np.ndarray:
        return method(model, torch.as_tensor(inputs), torch.as_tensor(targets).long()).numpy()

    common = {"disable_warnings": True, "display_progressbar": False}
    call = {"model": model, "x_batch": xb, "y_batch": yb, "a_batch": ab, "explain_func": explain, "device": "cpu", "batch_size": len(xb)}
    metrics = {
        "max_sensitivity": quantus.MaxSensitivity(nr_samples=10, lower_bound=0.02, **common),
        "avg_sensitivity_abs": quantus.AvgSensitivity(
            nr_samples=50, lower_bound=0.2, norm_denominator=lambda a: np.ones(a.shape[0]), **common
        ),
        "local_lipschitz": quantus.LocalLipschitzEstimate(nr_samples=20, perturb_std=0.1, **common),
        "infidelity": quantus.Infidelity(n_perturb_samples=1, perturb_patch_sizes=[4], **common),
        "deletion_auc": quantus.PixelFlipping(features_in_step=x.shape[-1] * x.shape[-2] // STEPS, **common),
        "sensitivity_n": quantus.SensitivityN(features_in_step=7, n_max_percentage=700 / 784, **common),
    }
    softmax = {"deletion_auc": True}
    return {name: (lambda m=metric, s=softmax.get(name, False): m(**call, softmax=s)) for name, metric in metrics.items()}


def build_cases(model: nn.Module, x: Tensor, y: Tensor, phi: Tensor, method: Saliency, with_quantus: bool) -> list[Case]:
    q = quantus_cases(model, x, y, phi, method) if with_quantus else {}
    same = "same computation"
    return [
        Case("max_sensitivity", "n = 10, r = 0.02, relative", 10, True,
             lambda m: max_sensitivity(model, x, y, method, attribution=phi, pass_budget=m), q.get("max_sensitivity"),
             same + " (Quantus: MaxSensitivity, uniform noise, Frobenius norm relative to ‖Φ‖)"),
        Case("avg_sensitivity_abs", "n = 50, r = 0.2, absolute", 50, True,
             lambda m: avg_sensitivity(model, x, y, method, radius=0.2, n_samples=50, relative=False, attribution=phi, pass_budget=m),
             q.get("avg_sensitivity_abs"), same + " (AvgSensitivity, denominator 1)"),
        Case("local_lipschitz", "n = 20, ε = 0.1", 20, True,
             lambda m: local_lipschitz(model, x, y, method, attribution=phi, pass_budget=m), q.get("local_lipschitz"),
             "same passes; Quantus draws Gaussian noise (σ = 0.1), robustlens uniform in the ε-ball"),
        Case("infidelity", "n = 50, σ = 0.1", 51, False,
             lambda m: infidelity(model, x, y, method, attribution=phi, pass_budget=m), q.get("infidelity"),
             "not the same computation: Quantus shifts 49 patches of 4 × 4 (one forward each, 50 with the clean one), "
             "robustlens draws 50 Gaussian I"),
        Case("deletion_auc", f"T = {STEPS}", STEPS + 1, False,
             lambda m: deletion_auc(model, x, y, phi, steps=STEPS, pass_budget=m), q.get("deletion_auc"),
             f"same passes (PixelFlipping, 28 pixels per step, {STEPS} steps, softmax; its curve omits t = 0)"),
        Case("insertion_auc", f"T = {STEPS}, blur", STEPS + 1, False,
             lambda m: insertion_auc(model, x, y, phi, steps=STEPS, pass_budget=m), None, "no Quantus counterpart"),
        Case("sensitivity_n", "100 subsets of 78 pixels", 101, False,
             lambda m: sensitivity_n(model, x, y, phi, pass_budget=m), q.get("sensitivity_n"),
             "not the same computation: Quantus grows one subset by 7 pixels per step (100 steps) and correlates "
             "across examples; the same number of passes"),
        Case("spearman@noise", "ε = 0.1, Φ(x) and Φ(x') together", 2, True,
             lambda m: explanation_robustness(model, x, y, method, "noise", ("spearman",), pass_budget=m),
             None, "no Quantus counterpart (its Consistency/Continuity are other quantities)"),
    ]


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    b = args.batch_size
    model = build_model("small_cnn", 10, (1, 28, 28), (0.5,), (0.25,), backbone_kwargs={"width": 16, "hidden": 128}).eval()
    data = generate_shapes(b, 10, 28, 1, seed=0)
    x, y = data.images, data.labels
    method = Saliency()
    phi = method(model, x, y)
    stacked_budget = args.budget or default_pass_images((1, 28, 28), b)
    cases = [c for c in build_cases(model, x, y, phi, method, not args.no_quantus) if args.only is None or c.name in args.only]
    pool = torch.rand(max(c.blocks for c in cases) * b, 1, 28, 28)
    load_before = os.getloadavg()[0]
    times: dict[tuple[str, str], list[float]] = {}

    def timed(key: tuple[str, str], call: Callable[[], Any]) -> None:
        start = time.perf_counter()
        call()
        times.setdefault(key, []).append(time.perf_counter() - start)

    for case in cases:  # warm-up: first calls pay one-off allocations and imports
        case.run(stacked_budget)
        if case.quantus is not None:
            case.quantus()
    for _ in range(args.rounds):
        for case in cases:
            timed((case.name, "unstacked"), lambda c=case: c.run(b))
            times.setdefault((case.name, "floor_unstacked"), []).append(floor_seconds(model, pool, case, b, b))
            timed((case.name, "stacked"), lambda c=case: c.run(stacked_budget))
            times.setdefault((case.name, "floor_stacked"), []).append(floor_seconds(model, pool, case, b, stacked_budget))
            if case.quantus is not None:
                timed((case.name, "quantus"), case.quantus)
    load_after = os.getloadavg()[0]

    med = {key: statistics.median(values) for key, values in times.items()}
    lines = [
        f"PYTHONPATH=. python benchmarks/metrics_floor.py {shlex.join(argv)}".rstrip(),
        "",
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads={torch.get_num_threads()}, "
        f"B = {b}, stacked M = {stacked_budget} images per pass, median of {args.rounds} interleaved rounds; "
        f"load average {load_before:.1f} before, {load_after:.1f} after",
        "",
        "| metric | settings | passes unstacked → stacked | unstacked s | floor s | × floor | stacked s | floor s | × floor "
        "| speed-up | Quantus s | Quantus / stacked | Quantus computes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        n_unstacked = len(stacked_passes(case.blocks, b, b))
        n_stacked = len(stacked_passes(case.blocks, b, stacked_budget))
        u, fu = med[(case.name, "unstacked")], med[(case.name, "floor_unstacked")]
        s, fs = med[(case.name, "stacked")], med[(case.name, "floor_stacked")]
        quantus = med.get((case.name, "quantus"))
        q_cells = f"{quantus:.3f} | {quantus / s:.1f}" if quantus is not None else "— | —"
        lines.append(
            f"| {case.name} | {case.settings} | {n_unstacked} → {n_stacked} | {u:.3f} | {fu:.3f} | {u / fu:.2f} "
            f"| {s:.3f} | {fs:.3f} | {s / fs:.2f} | {u / s:.2f} | {q_cells} | {case.quantus_note} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(table + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
