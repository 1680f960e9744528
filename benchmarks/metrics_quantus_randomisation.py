"""Seconds per batch of the randomisation and localisation metrics next to Quantus 0.6's for the
same work (same model, inputs, explanations and number of samples).

Model: the quickstart CNN (``small_cnn``, width 16, hidden 128, 10 classes), untrained, eval
mode, CPU, one thread; inputs: B = 128 synthetic shapes 1×28×28; method: saliency (ours, and
Captum's through ``quantus.explain`` for Quantus). Similarity: Spearman on both sides (Quantus's
random-logit default, a 1-D SSIM, is not the same quantity). Localisation metrics score given
maps (the time excludes the attribution); focus scores 2 × 2 mosaics (56 × 56) of the same
images. Quantus has no model-perturbation metric (its column is empty). Median of ``repeats``.

    PYTHONPATH=. python benchmarks/metrics_quantus_randomisation.py

The scores of every metric (all families) on the quickstart model are in
``benchmarks/explanation_profile.md`` (made by ``train.py report``).

Run by hand, never in CI; on a shared machine, say so next to the figures.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from attributions import Saliency, pixel_map
from benchmarks.timing import median_seconds
from common.mosaics import build_mosaics
from datamodules import generate_shapes
from lightning_modules import build_model
from metrics.functional.localisation import focus, mask_auc, mask_topk_intersection
from metrics.functional.randomisation import (
    independent_randomisation,
    model_perturbation,
    random_logit,
    smoothed_randomisation,
)

BATCH = 128
SMOOTH_SAMPLES = 10


def _setup() -> tuple[nn.Module, Any]:
    model = build_model("small_cnn", 10, (1, 28, 28), (0.5,), (0.25,), backbone_kwargs={"width": 16, "hidden": 128}).eval()
    return model, generate_shapes(BATCH, 10, 28, 1, seed=0)


def _row(metric: str, ours: Callable[[], object], quantus: Callable[[], object] | None, repeats: int, note: str = "") -> dict:
    ours_s = median_seconds(ours, repeats)
    quantus_s = median_seconds(quantus, repeats) if quantus is not None else None
    return {
        "metric": metric,
        "batch": BATCH,
        "ours_s": ours_s,
        "quantus_s": quantus_s,
        "speedup": quantus_s / ours_s if quantus_s is not None else None,
        "note": note,
    }


def timings(repeats: int = 3) -> list[dict]:
    """One row per metric: seconds for one batch of B = 128, ours and Quantus's, and the ratio."""
    import quantus

    torch.set_num_threads(1)
    model, data = _setup()
    x, y, masks = data.images, data.labels, data.masks
    xn, yn = x.numpy(), y.numpy()
    saliency = Saliency()
    explain = {"explain_func": quantus.explain, "explain_func_kwargs": {"method": "Saliency"}, "device": "cpu"}
    quiet = {"disable_warnings": True}
    spearman = quantus.similarity_func.correlation_spearman
    rows = [
        _row(
            "random_logit",
            lambda: random_logit(model, x, y, saliency, similarity="spearman"),
            lambda: quantus.RandomLogit(num_classes=10, similarity_func=spearman, **quiet)(model, xn, yn, **explain),
            repeats,
            "attribution of the target included on both sides",
        ),
        _row(
            "independent_randomisation",
            lambda: independent_randomisation(model, x, y, saliency),
            lambda: quantus.MPRT(layer_order="independent", **quiet)(model, xn, yn, batch_size=BATCH, **explain),
            repeats,
            "all layers, one by one",
        ),
        _row(
            "smoothed_randomisation",
            lambda: smoothed_randomisation(model, x, y, saliency, n_samples=SMOOTH_SAMPLES),
            lambda: quantus.SmoothMPRT(nr_samples=SMOOTH_SAMPLES, **quiet)(model, xn, yn, batch_size=BATCH, **explain),
            repeats,
            f"N = {SMOOTH_SAMPLES}, bottom-up cascade",
        ),
        _row("model_perturbation", lambda: model_perturbation(model, x, y, saliency), None, repeats, "n = 10; no Quantus metric"),
    ]
    maps = pixel_map(saliency(model, x, y), "sum")
    mosaics = build_mosaics(x, y, BATCH, seed=0)
    mosaic_maps = torch.randn(BATCH, 56, 56, generator=torch.Generator().manual_seed(0))
    pooled = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 10)).eval()  # Quantus wants a model
    plain = {"abs": False, "normalise": False, **quiet}
    a, s = maps[:, None].numpy(), masks.numpy()
    rows += [
        _row(
            "mask_topk_intersection",
            lambda: mask_topk_intersection(maps, masks, k=78),
            lambda: quantus.TopKIntersection(k=78, **plain)(model, xn, yn, a_batch=a, s_batch=s, device="cpu"),
            repeats,
            "k = 10 % of 784, given maps",
        ),
        _row(
            "mask_auc",
            lambda: mask_auc(maps, masks),
            lambda: quantus.AUC(**plain)(model, xn, yn, a_batch=a, s_batch=s, device="cpu"),
            repeats,
            "given maps",
        ),
        _row(
            "focus",
            lambda: focus(mosaic_maps, mosaics.quadrants),
            lambda: quantus.Focus(**plain)(
                pooled, mosaics.images.numpy(), mosaics.labels.numpy(), a_batch=mosaic_maps[:, None].numpy(),
                custom_batch=mosaics.quadrants.numpy().astype(np.int64), device="cpu",
            ),
            repeats,
            "given maps of 2×2 mosaics",
        ),
    ]
    return rows


def main() -> None:
    rows = timings()
    print("# PYTHONPATH=. python benchmarks/metrics_quantus_randomisation.py")
    print(f"# torch {torch.__version__}, {platform.machine()}, threads=1, B={BATCH}, median of 3")
    print("| metric | ours (s) | Quantus (s) | Quantus / ours | note |")
    print("|---|---:|---:|---:|---|")
    for r in rows:
        q = f"{r['quantus_s']:.3f}" if r["quantus_s"] is not None else "—"
        ratio = f"{r['speedup']:.1f}×" if r["speedup"] is not None else "—"
        print(f"| {r['metric']} | {r['ours_s']:.3f} | {q} | {ratio} | {r['note']} |")


if __name__ == "__main__":
    main()
    sys.exit(0)
