"""Faithfulness: does removing what the explanation calls relevant change the output?

Deletion and insertion (Samek, Binder, Montavon, Lapuschkin & Müller, "Evaluating the
Visualization of What a Deep Neural Network Has Learned", IEEE TNNLS 2017, region perturbation
most-relevant-first; Petsiuk, Das & Saenko, "RISE", BMVC 2018). Pixels are ordered by their
relevance Σ_c Φ_c (most relevant first; ties broken at random, per example). In T steps the
first ⌊tP/T⌋ pixels are

- deletion: replaced by a baseline (zero by default) in x;
- insertion: copied from x into the baseline (a blurred x by default, as Petsiuk et al.);

and the target's softmax probability p_t is recorded at t = 0..T. The score is the area under
that curve over a [0, 1] axis (trapezoid rule). A faithful explanation gives a low deletion AUC
(the probability falls fast) and a high insertion AUC.

Sensitivity-n (Ancona, Ceolini, Öztireli & Gross, "Towards better understanding of
gradient-based attribution methods for Deep Neural Networks", ICLR 2018): for random subsets
S_j of n pixels, the Pearson correlation over j between Σ_{i∈S_j} Φ_i and the output drop
f_t(x) − f_t(x with S_j set to the baseline), f_t the target's logit. 1 means the attribution
predicts the effect of removing any n pixels.

The (T + 1)·B curve images, or the clean batch and its n_subsets·B masked copies, go through the
model in stacked passes of up to M images (:mod:`metrics.functional.stacking`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from attributions import pixel_map
from common.example_noise import example_ids, example_noise
from common.filters import gaussian_blur
from common.similarity import pearson
from metrics.functional.common import check_positive_int, target_scores
from metrics.functional.stacking import resolve_pass_budget, stacked_map

Removal = Literal["zero", "mean", "blur"]
REMOVALS: tuple[str, ...] = ("zero", "mean", "blur")
_ORDER_STREAM = 4
_SUBSET_STREAM = 5


def removal_baseline(x: Tensor, baseline: Removal, blur_sigma: float = 5.0) -> Tensor:
    """What removed pixels become: "zero", the image's per-channel "mean", or a "blur"red x."""
    if baseline == "zero":
        return torch.zeros_like(x)
    if baseline == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    if baseline == "blur":
        return gaussian_blur(x, blur_sigma)
    raise ValueError(f"baseline must be one of {REMOVALS}, got {baseline!r}")


def relevance_order_ranks(relevance: Tensor, seed: int, ids: Tensor | None, stream: int = _ORDER_STREAM) -> Tensor:
    """Rank of every pixel by decreasing relevance (B, P) → (B, P) in 0..P−1, random tie-breaks.

    ``stream`` separates the tie-breaking draws of the metrics that rank pixels or regions.
    """
    b, p = relevance.shape
    ids = example_ids(b, ids, relevance.device)
    shuffle = example_noise((p,), ids, seed, stream).argsort(dim=1)  # (B, P) random order
    # A stable sort of the shuffled rows keeps tied pixels in random order.
    order_in_shuffle = relevance.gather(1, shuffle).argsort(dim=1, descending=True, stable=True)
    order = shuffle.gather(1, order_in_shuffle)  # pixel indices, most relevant first
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(p, device=relevance.device).expand(b, p))
    return ranks


def perturbation_curve(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    attribution: Tensor,
    mode: Literal["deletion", "insertion"] = "deletion",
    steps: int = 20,
    baseline: Removal | None = None,
    blur_sigma: float = 5.0,
    seed: int = 0,
    ids: Tensor | None = None,
    pass_budget: int | None = None,
) -> Tensor:
    """p_t after removing (deletion) or inserting (insertion) the top ⌊tP/T⌋ pixels: (B, T + 1).

    Args:
        model: the classifier.
        x: (B, C, H, W) inputs.
        target: (B,) explained classes.
        attribution: Φ(x) (B, C, H, W).
        mode: "deletion" or "insertion".
        steps: T.
        baseline: "zero", "mean" or "blur"; None is "zero" for deletion, "blur" for insertion.
        blur_sigma: σ in pixels of the "blur" baseline.
        seed: seed of the tie-breaking order.
        ids: (B,) example identities for the tie-breaking order.
        pass_budget: M, images per forward pass (None: the enclosing
            :func:`~metrics.functional.stacking.pass_budget`, else its default).
    """
    steps = check_positive_int("steps", steps)
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be one of ('deletion', 'insertion'), got {mode!r}")
    if baseline is None:
        baseline = "zero" if mode == "deletion" else "blur"
    images = resolve_pass_budget(pass_budget, x)
    b, c, h, w = x.shape
    filler = removal_baseline(x, baseline, blur_sigma)
    ranks = relevance_order_ranks(pixel_map(attribution, "sum").flatten(1), seed, ids).view(b, 1, h, w)
    deletion = mode == "deletion"

    def build(t: int, examples: slice) -> tuple[Tensor]:
        chosen = ranks[examples] < (t * h * w) // steps  # (rows, 1, H, W) the top pixels at step t
        kept, other = (filler[examples], x[examples]) if deletion else (x[examples], filler[examples])
        return (torch.where(chosen, kept, other),)

    def evaluate(stacked: tuple[Tensor, ...], examples: Tensor) -> Tensor:
        return target_scores(model, stacked[0], target[examples], output="probability")  # (rows,)

    return stacked_map(steps + 1, b, images, build, evaluate).T  # (B, T + 1)


def curve_auc(curve: Tensor) -> Tensor:
    """Trapezoid area under curves (B, T + 1) sampled evenly on [0, 1]: (B,)."""
    steps = curve.shape[1] - 1
    return (curve.sum(dim=1) - 0.5 * (curve[:, 0] + curve[:, -1])) / steps


def deletion_auc(model: nn.Module, x: Tensor, target: Tensor, attribution: Tensor, **options: object) -> Tensor:
    """Area under the deletion curve (B,); lower is more faithful. Options: :func:`perturbation_curve`."""
    return curve_auc(perturbation_curve(model, x, target, attribution, "deletion", **options))  # type: ignore[arg-type]


def insertion_auc(model: nn.Module, x: Tensor, target: Tensor, attribution: Tensor, **options: object) -> Tensor:
    """Area under the insertion curve (B,); higher is more faithful. Options: :func:`perturbation_curve`."""
    return curve_auc(perturbation_curve(model, x, target, attribution, "insertion", **options))  # type: ignore[arg-type]


def sensitivity_n(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    attribution: Tensor,
    n: int | None = None,
    n_subsets: int = 100,
    baseline: Removal = "zero",
    subsets: Tensor | None = None,
    seed: int = 0,
    ids: Tensor | None = None,
    pass_budget: int | None = None,
) -> Tensor:
    """Sensitivity-n per example (B,): Pearson correlation of Σ_{S} Φ and the output drop.

    Args:
        model: the classifier.
        x: (B, C, H, W) inputs.
        target: (B,) explained classes.
        attribution: Φ(x) (B, C, H, W); its channel sum is the relevance of each pixel.
        n: pixels per subset; None is 10 % of the pixels.
        n_subsets: random subsets per example.
        baseline: what removed pixels become ("zero", "mean", "blur").
        subsets: fixed boolean subsets (n_subsets, B, H, W) instead of random ones.
        seed: seed of the random subsets.
        ids: (B,) example identities for the subsets.
        pass_budget: M, images per forward pass (None: the enclosing
            :func:`~metrics.functional.stacking.pass_budget`, else its default).
    """
    b, _, h, w = x.shape
    n = max(1, round(0.1 * h * w)) if n is None else n
    if isinstance(n, bool) or int(n) != n or not 1 <= n <= h * w:
        raise ValueError(f"n must be an integer in [1, {h * w}] (pixels per subset), got {n!r}")
    n_subsets = check_positive_int("n_subsets", n_subsets)
    if n_subsets < 2:
        raise ValueError(f"n_subsets must be >= 2 to correlate, got {n_subsets}")
    if subsets is not None and tuple(subsets.shape) != (n_subsets, b, h, w):
        raise ValueError(f"subsets must have shape {(n_subsets, b, h, w)}, got {tuple(subsets.shape)}")
    images = resolve_pass_budget(pass_budget, x)
    ids = example_ids(b, ids, x.device)
    relevance = pixel_map(attribution, "sum").flatten(1).double()  # (B, P)
    filler = removal_baseline(x, baseline)

    def build(block: int, examples: slice) -> tuple[Tensor, Tensor]:
        """Block 0: the clean inputs (nothing removed); block j + 1: subset S_j removed."""
        rows = examples.stop - examples.start
        if block == 0:
            return x[examples], torch.zeros((rows, h * w), dtype=torch.bool, device=x.device)
        j = block - 1
        if subsets is None:
            keys = example_noise((h * w,), ids[examples], seed, _SUBSET_STREAM, j)  # (rows, P)
            chosen = torch.zeros_like(keys, dtype=torch.bool).scatter_(1, keys.topk(int(n), dim=1).indices, True)
        else:
            chosen = subsets[j, examples].flatten(1).bool()
        return torch.where(chosen.view(rows, 1, h, w), filler[examples], x[examples]), chosen

    def evaluate(stacked: tuple[Tensor, ...], examples: Tensor) -> Tensor:
        removed, chosen = stacked
        scores = target_scores(model, removed, target[examples]).double()  # (rows,)
        return torch.stack([scores, (relevance[examples] * chosen).sum(dim=1)], dim=1)  # (rows, 2)

    rows = stacked_map(n_subsets + 1, b, images, build, evaluate)  # (n_subsets + 1, B, 2)
    drops = rows[0, :, 0].unsqueeze(1) - rows[1:, :, 0].T  # f_t(x) − f_t(x with S_j removed), (B, n_subsets)
    return pearson(rows[1:, :, 1].T, drops)
