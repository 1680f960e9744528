"""Max-sensitivity and infidelity against Captum's ``sensitivity_max`` and ``infidelity``.

Same model (the quickstart CNN, ``small_cnn`` width 16, hidden 128, 10 classes, untrained, eval
mode), same inputs (a batch of synthetic 1×28×28 shapes: 256, and 64 for the integrated-gradients row), same explained classes (the labels),
same settings: max-sensitivity with uniform δ in the L∞ ball of radius 0.02, 10 samples,
relative Frobenius norm (Captum's defaults and robustlens' ``max_sensitivity``); infidelity with
Gaussian I of σ = 0.1, 50 samples, ``normalize=True`` (robustlens' defaults; Captum has no default
perturbation for infidelity, so it is given the same distribution). Explanations: saliency
(|∂f_y/∂x|, Captum's ``Saliency`` with its default ``abs=True``) and integrated gradients (zero
baseline, Gauss-Legendre, 20 steps, Captum's ``IntegratedGradients``) for max-sensitivity;
infidelity scores a given attribution, so both receive the same precomputed saliency map.

First the two are run on the same perturbations (Captum's ``perturb_func`` returns ours, in its
repeat-interleaved order) and the per-example scores compared; then each is timed with its own
random perturbations, interleaved, median of ``--repeats``.

Captum is not a dependency of robustlens: ``pip install captum`` into the environment that runs
this benchmark only.

    PYTHONPATH=. python benchmarks/captum_comparison.py [--batch-size 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import Tensor

from attributions import build_attribution
from datamodules import generate_shapes
from lightning_modules import build_model
from metrics import compute_metric
from metrics.functional.infidelity import infidelity as robustlens_infidelity
from metrics.functional.sensitivity import sensitivity_samples

RADIUS, SENS_SAMPLES = 0.02, 10
SIGMA, INFD_SAMPLES = 0.1, 50
IG_STEPS = 20


def repeat_interleaved(per_sample: Tensor) -> Tensor:
    """(n, B, ...) → (B·n, ...) in Captum's order: example i's samples at rows i·n ... i·n + n − 1."""
    return per_sample.transpose(0, 1).flatten(0, 1)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--ig-batch-size", type=int, default=64, help="batch of the integrated-gradients rows (11 IG calls each)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    import captum
    from captum.attr import IntegratedGradients, Saliency
    from captum.metrics import infidelity, sensitivity_max

    print(f"command: PYTHONPATH=. python benchmarks/captum_comparison.py {shlex.join(argv)}".rstrip())
    print(f"torch {torch.__version__}, captum {captum.__version__}, {args.threads} thread(s), batch {args.batch_size}")
    torch.manual_seed(0)
    model = build_model("small_cnn", 10, (1, 28, 28), (0.5,), (0.25,), backbone_kwargs={"width": 16, "hidden": 128}).eval()
    data = generate_shapes(args.batch_size, 10, 28, 1, seed=0)
    x, y = data.images, data.labels
    b = x.shape[0]

    ours_methods = {
        "saliency": build_attribution("saliency"),
        "integrated_gradients": build_attribution("integrated_gradients", steps=IG_STEPS, rule="gausslegendre"),
    }
    captum_methods: dict[str, Callable[..., Tensor]] = {
        "saliency": Saliency(model).attribute,
        # Both integrated gradients put at most 1024 rows (examples × steps) in one forward.
        "integrated_gradients": lambda inputs, target: IntegratedGradients(model).attribute(
            inputs, target=target, n_steps=IG_STEPS, method="gausslegendre", internal_batch_size=1024
        ),
    }

    # ---- same perturbations: are the numbers the same? -----------------------------------------
    generator = torch.Generator().manual_seed(1)
    deltas = (2 * torch.rand((SENS_SAMPLES, *x.shape), generator=generator) - 1) * RADIUS  # (n, B, C, H, W)
    noise = SIGMA * torch.randn((INFD_SAMPLES, *x.shape), generator=generator)  # (n, B, C, H, W)
    print("\nsame perturbations, per-example scores: largest |robustlens − Captum| / largest |score|")
    rows = {"saliency": b, "integrated_gradients": min(b, args.ig_batch_size)}
    for name in ours_methods:
        xs, ys, ds = x[: rows[name]], y[: rows[name]], deltas[:, : rows[name]]
        ours = sensitivity_samples(model, xs, ys, ours_methods[name], RADIUS, SENS_SAMPLES, relative=True, perturbations=ds)
        ours = ours.max(dim=1).values
        theirs = sensitivity_max(
            captum_methods[name], xs, perturb_func=lambda inputs, r, ds=ds: inputs + repeat_interleaved(ds),
            perturb_radius=RADIUS, n_perturb_samples=SENS_SAMPLES, target=ys,
        )
        error = float((ours - theirs).abs().max() / theirs.abs().max())
        print(f"  max_sensitivity ({name}): {error:.1e}   (mean {float(ours.mean()):.5f} vs {float(theirs.mean()):.5f})")
    attribution = ours_methods["saliency"](model, x, y).detach()
    ours = robustlens_infidelity(
        model, x, y, ours_methods["saliency"], SIGMA, INFD_SAMPLES, normalize=True,
        attribution=attribution, perturbations=noise,
    )
    flat_noise = repeat_interleaved(noise)
    theirs = infidelity(
        model, lambda inputs: (flat_noise, inputs - flat_noise), x, attribution, target=y,
        n_perturb_samples=INFD_SAMPLES, normalize=True,
    )
    error = float((ours - theirs).abs().max() / theirs.abs().max())
    print(f"  infidelity (saliency): {error:.1e}   (mean {float(ours.mean()):.6f} vs {float(theirs.mean()):.6f})")

    # ---- timing, each with its own random perturbations -----------------------------------------
    def captum_gaussian(inputs: Tensor) -> tuple[Tensor, Tensor]:
        perturbation = SIGMA * torch.randn_like(inputs)
        return perturbation, inputs - perturbation

    calls: dict[str, dict[str, Callable[[], Tensor]]] = {}
    for name in ours_methods:
        xs, ys = x[: rows[name]], y[: rows[name]]
        calls[f"max_sensitivity ({name}), B = {rows[name]}"] = {
            "robustlens": lambda m=ours_methods[name], xs=xs, ys=ys: compute_metric("max_sensitivity", model, xs, ys, m),
            "captum": lambda f=captum_methods[name], xs=xs, ys=ys: sensitivity_max(f, xs, target=ys),
        }
    calls[f"infidelity (saliency map given), B = {b}"] = {
        "robustlens": lambda: compute_metric("infidelity", model, x, y, ours_methods["saliency"], attribution=attribution),
        "captum": lambda: infidelity(
            model, captum_gaussian, x, attribution, target=y, n_perturb_samples=INFD_SAMPLES, normalize=True
        ),
    }
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for metric, sides in calls.items():
            for side, call in sides.items():
                start = time.perf_counter()
                call()
                times.setdefault((metric, side), []).append(time.perf_counter() - start)
    print(f"\nseconds per call, median of {args.repeats} interleaved repeats")
    print("| metric | robustlens s | Captum s | robustlens / Captum |")
    print("|---|---|---|---|")
    for metric in calls:
        ours_s = statistics.median(times[(metric, "robustlens")])
        captum_s = statistics.median(times[(metric, "captum")])
        print(f"| {metric} | {ours_s:.3f} | {captum_s:.3f} | {ours_s / captum_s:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
