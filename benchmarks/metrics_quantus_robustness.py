"""Seconds per batch of the robustness, complexity and axiomatic metrics, next to Quantus 0.6.

Model: the quickstart CNN (``small_cnn``, width 16, hidden 128), untrained, eval mode, CPU, one
thread; inputs: 128 synthetic shapes of 1×28×28; method: saliency (the same function feeds
Quantus through its ``explain_func``, and Φ(x) is given to both, so each row times the metric's
own work). Both sides do the same number of samples: relative stabilities 20 perturbations,
continuity 28 translations, non-sensitivity one forward pass per pixel. Quantus's relative
stabilities are three calls; here "relative_stability (3 shared)" computes the three from one
set of perturbations.

    PYTHONPATH=. python benchmarks/metrics_quantus_robustness.py

Run by hand, never in CI; figures from a shared machine say so.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from attributions import Saliency
from datamodules import generate_shapes
from lightning_modules import build_model
from metrics.functional.axiomatic import completeness, input_invariance, non_sensitivity
from metrics.functional.complexity import complexity, effective_complexity, sparseness
from metrics.functional.stability import (
    consistency,
    continuity,
    relative_input_stability,
    relative_output_stability,
    relative_representation_stability,
    relative_stability,
)

BATCH = 128
N_SAMPLES = 20
N_STEPS = 28
LAYER = "net.classifier.2"  # the penultimate representation of small_cnn


def quickstart_setup(batch: int = BATCH) -> tuple[nn.Module, Tensor, Tensor]:
    """The quickstart model (untrained) and a batch of 1×28×28 shapes."""
    torch.manual_seed(0)
    model = build_model("small_cnn", 10, (1, 28, 28), (0.5,), (0.25,), backbone_kwargs={"width": 16, "hidden": 128}).eval()
    data = generate_shapes(batch, 10, 28, 1, seed=0)
    return model, data.images, data.labels


def seconds(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call()
    return time.perf_counter() - start


def quantus_runner(model: nn.Module, x: Tensor, y: Tensor, phi: Tensor) -> Callable[..., Callable[[], object]]:
    """``run(name, call_options, **metric_options)``: a thunk calling quantus.<name> on the batch."""
    import quantus

    method = Saliency()

    def explain(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: object) -> np.ndarray:
        return method(model, torch.as_tensor(inputs), torch.as_tensor(targets)).detach().numpy()

    def run(name: str, call_options: dict[str, Any] | None = None, **options: Any) -> Callable[[], object]:
        metric = getattr(quantus, name)(disable_warnings=True, **options)
        return lambda: metric(
            model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=phi.numpy().copy(), channel_first=True,
            device="cpu", explain_func=explain, batch_size=len(x), **(call_options or {}),
        )

    return run


def timings(
    batch: int = BATCH, on_row: Callable[[dict], None] | None = None, metrics: Sequence[str] | None = None
) -> list[dict]:
    """One row per metric: {"family", "metric", "robustlens_s", "quantus_s", "samples"} at B = 128.

    ``on_row`` is called with each row as soon as it is measured; ``metrics`` picks rows by name.
    """
    torch.set_num_threads(1)
    model, x, y = quickstart_setup(batch)
    method = Saliency()
    phi = method(model, x, y).detach()
    quantus = quantus_runner(model, x, y, phi)
    stability = {"attribution": phi, "n_samples": N_SAMPLES}
    rows: list[tuple[str, str, Callable[[], object], Callable[[], object] | None, str]] = [
        ("robustness", "relative_input_stability", lambda: relative_input_stability(model, x, y, method, **stability),
         quantus("RelativeInputStability", nr_samples=N_SAMPLES), f"{N_SAMPLES} perturbations"),
        ("robustness", "relative_output_stability", lambda: relative_output_stability(model, x, y, method, **stability),
         quantus("RelativeOutputStability", nr_samples=N_SAMPLES), f"{N_SAMPLES} perturbations"),
        ("robustness", "relative_representation_stability",
         lambda: relative_representation_stability(model, x, y, method, **stability),
         quantus("RelativeRepresentationStability", nr_samples=N_SAMPLES, layer_names=[LAYER]), f"{N_SAMPLES} perturbations"),
        ("robustness", "relative_stability (3 shared)", lambda: relative_stability(model, x, y, method, **stability),
         None, f"{N_SAMPLES} perturbations"),
        ("robustness", "continuity", lambda: continuity(model, x, y, method, attribution=phi, n_steps=N_STEPS),
         quantus("Continuity", nr_steps=N_STEPS), f"{N_STEPS} translations"),
        ("robustness", "consistency", lambda: consistency(model, x, y, phi), quantus("Consistency"), "-"),
        ("complexity", "sparseness", lambda: sparseness(phi), quantus("Sparseness"), "-"),
        ("complexity", "complexity", lambda: complexity(phi), quantus("Complexity"), "-"),
        ("complexity", "effective_complexity", lambda: effective_complexity(phi), quantus("EffectiveComplexity"), "-"),
        ("axiomatic", "completeness", lambda: completeness(model, x, y, phi), quantus("Completeness"), "-"),
        ("axiomatic", "non_sensitivity", lambda: non_sensitivity(model, x, y, phi),
         quantus("NonSensitivity", {"softmax": False}), "784 pixels"),
        ("axiomatic", "input_invariance", lambda: input_invariance(model, x, y, method, attribution=phi),
         None, "1 shifted model (Quantus cannot shift a model whose first module is Normalize)"),
    ]
    out = []
    for family, name, ours, theirs, samples in rows:
        if metrics is not None and name not in metrics:
            continue
        out.append({
            "family": family, "metric": name, "samples": samples,
            "robustlens_s": seconds(ours), "quantus_s": seconds(theirs) if theirs is not None else float("nan"),
        })
        if on_row is not None:
            on_row(out[-1])
    return out


def print_row(r: dict) -> None:
    ratio = r["quantus_s"] / r["robustlens_s"] if r["robustlens_s"] > 0 else float("nan")
    print(f"| {r['family']} | {r['metric']} | {r['samples']} | {r['robustlens_s']:.3f} | {r['quantus_s']:.3f} | {ratio:.1f} |", flush=True)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metrics", nargs="+", default=None, help="rows to time (default: all)")
    args = parser.parse_args(argv)
    print(f"# PYTHONPATH=. python benchmarks/metrics_quantus_robustness.py {shlex.join(argv)}".rstrip())
    print(f"# torch {torch.__version__}, {platform.machine()}, threads=1, small_cnn (width 16), B={BATCH}, saliency, one run")
    print("| family | metric | samples | robustlens s | Quantus s | Quantus / robustlens |")
    print("|---|---|---|---|---|---|", flush=True)
    timings(on_row=print_row, metrics=args.metrics)


if __name__ == "__main__":
    main(sys.argv[1:])
