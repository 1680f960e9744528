"""Seconds per faithfulness metric, robustlens next to Quantus 0.6 doing the same work.

Model: the quickstart CNN (``small_cnn``, width 16, hidden 128), untrained, eval mode, CPU, one
thread; inputs: B = 128 synthetic shapes of 1×28×28 (Quantus's ROAD runs on one channel only);
explanations: saliency, computed once and handed to both libraries. Both sides run the same
number of subsets, steps, samples, percentages and segments (the settings column); each is timed
once (these calls take seconds to minutes). Quantus's ``np.trapz`` (gone in NumPy 2.4) is
pointed at ``np.trapezoid`` for its IROF area.

    PYTHONPATH=. python benchmarks/metrics_quantus_faithfulness.py

Run by hand, never in CI. On a shared machine, say so next to the figures.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from attributions import build_attribution
from datamodules import generate_shapes
from lightning_modules import build_model
from metrics.functional.faithfulness_profile import (
    faithfulness_correlation,
    irof,
    monotonicity,
    monotonicity_correlation,
    road,
    selectivity,
    sufficiency,
)

BATCH = 128


def _seconds(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def timings(batch: int = BATCH) -> list[dict[str, Any]]:
    """One row per metric: settings, robustlens seconds, Quantus seconds, both per 100 images."""
    import quantus  # a reference library: benchmarks and tests only

    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid  # type: ignore[attr-defined]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("small_cnn", 10, (1, 28, 28), (0.5,), (0.25,), backbone_kwargs={"width": 16, "hidden": 128}).eval()
    data = generate_shapes(batch, 10, 28, 1, seed=0, spurious_rate=1.0)
    x, y = data.images[:batch], data.labels[:batch]
    a = build_attribution("saliency")(model, x, y).detach()
    xs, ys, as_ = x.numpy(), y.numpy(), a.numpy()
    common = {"abs": False, "normalise": False, "disable_warnings": True}

    def run_quantus(metric: Any) -> Callable[[], object]:
        return lambda: metric(model=model, x_batch=xs, y_batch=ys, a_batch=as_, device="cpu")

    cases = [
        (
            "faithfulness_correlation", "100 subsets of 78 px",
            lambda: faithfulness_correlation(model, x, y, a, subset_size=78, n_runs=100),
            quantus.FaithfulnessCorrelation(nr_runs=100, subset_size=78, return_aggregate=False, **common),
        ),
        (
            "monotonicity", "196 steps of 4 px",
            lambda: monotonicity(model, x, y, a, pixels_per_step=4),
            quantus.Monotonicity(features_in_step=4, **common),
        ),
        (
            "monotonicity_correlation", "49 groups of 16 px × 10 samples",
            lambda: monotonicity_correlation(model, x, y, a, pixels_per_step=16, n_samples=10),
            quantus.MonotonicityCorrelation(features_in_step=16, nr_samples=10, **common),
        ),
        (
            "road (morf)", "9 percentages, noisy linear imputation",
            lambda: road(model, x, y, a),
            quantus.ROAD(percentages=list(range(10, 100, 10)), **common),
        ),
        (
            "irof", "SLIC, 100 segments requested",
            lambda: irof(model, x, y, a),
            quantus.IROF(return_aggregate=False, **common),
        ),
        (
            "selectivity", "49 patches of 4 × 4",
            lambda: selectivity(model, x, y, a, patch_size=4),
            quantus.Selectivity(patch_size=4, **common),
        ),
        (
            "sufficiency", "threshold 0.6, seuclidean",
            lambda: sufficiency(model, x, y, a),
            quantus.Sufficiency(**common),
        ),
    ]
    rows = []
    for name, settings, ours, reference in cases:
        ours_s = _seconds(ours)
        quantus_s = _seconds(run_quantus(reference))
        rows.append(
            {
                "metric": name,
                "settings": settings,
                "robustlens_s": ours_s,
                "quantus_s": quantus_s,
                "robustlens_s_per_100": 100 * ours_s / batch,
                "quantus_s_per_100": 100 * quantus_s / batch,
                "speed-up": quantus_s / ours_s,
            }
        )
    return rows


def main() -> None:
    print("# PYTHONPATH=. python benchmarks/metrics_quantus_faithfulness.py")
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, threads=1, B={BATCH}, 1×28×28, saliency")
    print("| metric | settings | robustlens s / 100 images | Quantus s / 100 images | Quantus / robustlens |")
    print("|---|---|---|---|---|")
    for row in timings():
        print(
            f"| {row['metric']} | {row['settings']} | {row['robustlens_s_per_100']:.2f} | "
            f"{row['quantus_s_per_100']:.2f} | {row['speed-up']:.1f}× |"
        )


if __name__ == "__main__":
    main()
