"""The field's faithfulness properties beyond deletion/insertion and Sensitivity-n.

Each function scores a batch of explanations Φ(x) (B, C, H, W) of the classes ``target`` and
returns one score per example (B,). A pixel's relevance is r_i = Σ_c Φ_c,i (channels are removed
together); every removal, noise draw and tie-break is keyed by the example's id (``ids``) and
``seed``, so a score never depends on the batch it sits in. Forward passes run in eval mode, no
graph, perturbed copies stacked into passes of at most ``pass_budget`` images
(:mod:`metrics.functional.stacking`).

- Faithfulness correlation (Bhatt, Weller & Moura, "Evaluating and Aggregating Feature-based
  Model Explanations", IJCAI 2020): over random subsets S_j of |S| pixels,
  ρ = Pearson_j(Σ_{i∈S_j} r_i, f_t(x) − f_t(x_{S_j ← baseline})), f_t the target's logit. It is
  Sensitivity-n's estimator at n = |S| (:func:`metrics.functional.faithfulness.sensitivity_n`);
  this one draws its subsets from its own stream. Higher is better; 1 for exact attributions of
  a linear model.
- Monotonicity (Arya et al., "One Explanation Does Not Fit All", arXiv:1909.03012, 2019; AIX360's
  ``monotonicity_metric``): starting from the baseline image, pixels are restored in increasing
  order of r (``pixels_per_step`` at a time) and p_t is recorded after each step; the score is 1
  when that sequence never decreases, else 0 (the mean over examples is the share of monotone
  explanations). Higher is better.
- Monotonicity correlation (Nguyen & Martínez, "On quantitative aspects of model
  interpretability", arXiv:2007.07584, 2020): for each group S_k of ``pixels_per_step`` pixels,
  the expected squared output change when only S_k is replaced by noise,
  v_k = E_u[(f_t(x_{S_k ← u}) − f_t(x))²], and ρ = Spearman_k(Σ_{i∈S_k} |r_i|, v_k), the groups
  formed in increasing order of |r|. Higher is better; 1 for exact attributions of a linear
  model's logit with a zero fill (v_k = r_k²).
- ROAD (Rong et al., ICML 2022): the top (MoRF) or bottom (LeRF) q % of pixels by r are removed
  and filled by noisy linear imputation (:mod:`metrics.functional.imputation`); the score is the
  mean over the q's of whether the model still predicts the target (``output="accuracy"``, the
  paper's curve) or of p_t (``"probability"``). MoRF: lower is better; LeRF: higher is better.
- IROF (Rieger & Hansen, "IROF: a low resource evaluation metric for explanation methods",
  ICLR workshop 2020): the image is cut into superpixels (scikit-image's SLIC, as the authors and
  Quantus; or a fixed grid), ordered by mean relevance, removed cumulatively (filled with the
  image's per-channel mean); the score is the area over the curve c_k = p_t(x_k)/p_t(x),
  k = 0..K, on a [0, 1] axis. Higher is better.
- Selectivity (Montavon, Samek & Müller, "Methods for interpreting and understanding deep neural
  networks", DSP 2018): square patches removed cumulatively in decreasing order of their summed
  relevance (filled with 0); the score is the area under p_t over the fraction of patches
  removed, unperturbed image included. Lower is better.
- Sufficiency (Dasgupta, Frost & Moshkovitz, "Framework for Evaluating Faithfulness of Local
  Explanations", ICML 2022): the share of the examples whose explanation lies within
  ``threshold`` of x's (distances divided by the largest in the reference set) that get x's
  predicted class. The reference set is the batch passed in: unlike every other score here this
  one depends on the other examples. Higher is better.

Where Quantus 0.6 differs (its scores are checked in ``tests/test_metrics_faithfulness.py``):
its features are the attribution's elements (C·H·W of them) where these are pixels (equal for
one channel; its ROAD fails on several channels); its "black" baseline is the image's minimum,
not 0; its IROF "mean" fill is the mean of the whole, already perturbed batch, and its IROF area is
K − trapz(c_1..c_K) with the unperturbed point left out and no normalisation (the same curve, see
:func:`irof`); its selectivity area likewise leaves out the unperturbed point (dx = 1); its IROF
and selectivity areas call ``np.trapz``, removed in NumPy 2.4; its monotonicity correlation
scales v_k by 1/f_t(x)², which leaves a rank correlation unchanged and is dropped here; its
monotonicity writes the baseline value where x's pixels should be restored, so its curve is flat
and every explanation scores 1 (with a perturbation function that restores x it equals this one).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from attributions import pixel_map
from common.example_noise import example_ids, example_noise
from common.similarity import spearman
from metrics.functional.common import check_positive_int, predicted, target_scores
from metrics.functional.faithfulness import REMOVALS, Removal, relevance_order_ranks, removal_baseline, sensitivity_n
from metrics.functional.imputation import noisy_linear_imputation
from metrics.functional.stacking import resolve_pass_budget, stacked_map

Output = Literal["logit", "probability"]
OUTPUTS: tuple[str, ...] = ("logit", "probability")
Segmentation = Literal["slic", "grid"]
SEGMENTATIONS: tuple[str, ...] = ("slic", "grid")
ROAD_ORDERS: tuple[str, ...] = ("morf", "lerf")
ROAD_OUTPUTS: tuple[str, ...] = ("accuracy", "probability")
DISTANCES: tuple[str, ...] = ("seuclidean", "euclidean")
NOISE_FILLS: tuple[str, ...] = ("uniform", *REMOVALS)

# Noise streams of this family (20–29): one per use, so no two draws coincide.
_SUBSET_STREAM = 20
_MONOTONICITY_ORDER_STREAM = 21
_CORRELATION_ORDER_STREAM = 22
_CORRELATION_NOISE_STREAM = 23
_ROAD_ORDER_STREAM = 24
_ROAD_NOISE_STREAM = 25
_IROF_ORDER_STREAM = 26
_SELECTIVITY_ORDER_STREAM = 27


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")


def stacked_scores(
    model: nn.Module,
    n: int,
    build: Callable[[int, slice], Tensor],
    x: Tensor,
    target: Tensor,
    output: Output,
    pass_budget: int | None,
) -> Tensor:
    """f_t of n perturbed copies of the batch, in passes of at most M images: (B, n).

    ``build(j, examples)`` returns copy j of those examples (rows, C, H, W); M is ``pass_budget``,
    else the enclosing :func:`~metrics.functional.stacking.pass_budget`, else its default.
    """
    images = resolve_pass_budget(pass_budget, x)

    def evaluate(stacked: tuple[Tensor, ...], examples: Tensor) -> Tensor:
        return target_scores(model, stacked[0], target[examples], output=output)  # (rows,)

    return stacked_map(n, x.shape[0], images, lambda j, examples: (build(j, examples),), evaluate).T


# ---------------------------------------------------------------------------------------------
# Faithfulness correlation


def faithfulness_correlation(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    attribution: Tensor,
    *,
    subset_size: int | None = None,
    n_runs: int = 100,
    baseline: Removal = "zero",
    subsets: Tensor | None = None,
    ids: Tensor | None = None,
    seed: int = 0,
    pass_budget: int | None = None,
) -> Tensor:
    """Faithfulness correlation per example (B,) (Bhatt et al. 2020).

    ρ = Pearson_j(Σ_{i∈S_j} r_i, f_t(x) − f_t(x with S_j set to the baseline)), f_t the logit.

    Args:
        model: the classifier.
        x: (B, C, H, W) inputs in [0, 1].
        target: (B,) explained classes.
        attribution: Φ(x) (B, C, H, W).
        subset_size: |S| in pixels; None is 10 % of the pixels (Quantus: 224 features).
        n_runs: random subsets per example (Quantus: 100).
        baseline: what removed pixels become ("zero", "mean", "blur").
        subsets: fixed boolean subsets (n_runs, B, H, W) instead of random ones.
        ids: (B,) example identities for the subsets.
        seed: seed of the subsets.
        pass_budget: M, images per forward pass (None: the enclosing
            :func:`~metrics.functional.stacking.pass_budget`, else its default).
    """
    b, _, h, w = x.shape
    size = max(1, round(0.1 * h * w)) if subset_size is None else subset_size
    if isinstance(size, bool) or int(size) != size or not 1 <= size <= h * w:
        raise ValueError(f"subset_size must be an integer in [1, {h * w}] (pixels per subset), got {subset_size!r}")
    n_runs = check_positive_int("n_runs", n_runs)
    if subsets is None:
        keys = torch.stack(
            [example_noise((h * w,), example_ids(b, ids, x.device), seed, _SUBSET_STREAM, j) for j in range(n_runs)]
        )  # (n_runs, B, P)
        chosen = keys.topk(int(size), dim=2).indices
        subsets = torch.zeros_like(keys, dtype=torch.bool).scatter_(2, chosen, True).view(n_runs, b, h, w)
    return sensitivity_n(
        model, x, target, attribution, n=int(size), n_subsets=n_runs, baseline=baseline, subsets=subsets, pass_budget=pass_budget
    )


# ---------------------------------------------------------------------------------------------
# Monotonicity (Arya et al.) and monotonicity correlation (Nguyen & Martínez)


def _ascending_ranks(relevance: Tensor, seed: int, ids: Tensor | None, stream: int) -> Tensor:
    """Rank of every pixel by increasing relevance (B, P), 0 = least relevant, random tie-breaks."""
    return relevance_order_ranks(-relevance, seed, ids, stream)


def monotonicity(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    attribution: Tensor,
    *,
    pixels_per_step: int = 1,
    baseline: Removal = "zero",
    output: Output = "probability",
    ids: Tensor | None = None,
    seed: int = 0,
    pass_budget: int | None = None,
) -> Tensor:
    """Arya et al.'s monotonicity per example (B,): 1.0 when f_t never falls as pixels are restored
    into the baseline in increasing order of relevance, 0.0 otherwise.

    With T = ⌈P / s⌉ steps of s pixels, x_k holds the k·s least relevant pixels of x and the
    baseline elsewhere; the score is 1[f_t(x_1) ≤ f_t(x_2) ≤ … ≤ f_t(x_T)] (the baseline image
    itself is not scored, as AIX360 and Quantus). One forward pass of the batch per step.

    Args:
        model: the classifier.
        x: (B, C, H, W) inputs.
        target: (B,) explained classes (AIX360 explains the predicted class; pass it as target).
        attribution: Φ(x) (B, C, H, W).
        pixels_per_step: s.
        baseline: the image pixels are restored into ("zero", "mean", "blur").
        output: f_t, the target's "probability" (AIX360, Quantus) or "logit".
        ids: (B,) example identities for the tie-breaking order.
        seed: seed of the tie-breaking order.
        pass_budget: M, images per forward pass (None: the enclosing
            :func:`~metrics.functional.stacking.pass_budget`, else its default).
    """
    step = check_positive_int("pixels_per_step", pixels_per_step)
    _check_choice("output", output, OUTPUTS)
    b, _, h, w = x.shape
    filler = removal_baseline(x, baseline)
    ranks = _ascending_ranks(pixel_map(attribution, "sum").flatten(1), seed, ids, _MONOTONICITY_ORDER_STREAM)
    ranks = ranks.view(b, 1, h, w)
    n_steps = math.ceil(h * w / step)

    def build(j: int, examples: slice) -> Tensor:  # x_{j+1}: the (j + 1)·s least relevant pixels restored
        return torch.where(ranks[examples] < (j + 1) * step, x[examples], filler[examples])

    curve = stacked_scores(model, n_steps, build, x, target, output, pass_budget)  # (B, T)
    return (curve.diff(dim=1) >= 0).all(dim=1).float()


def monotonicity_correlation(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    attribution: Tensor,
    *,
    pixels_per_step: int = 1,
    n_samples: int = 10,
    fill: str = "uniform",
    output: Output = "probability",
    noise: Tensor | None = None,
    ids: Tensor | None = None,
    seed: int = 0,
    pass_budget: int | None = None,
) -> Tensor:
    """Nguyen & Martínez's monotonicity per example (B,): ρ = Spearman_k(a_k, v_k).

    For the groups S_k of ``pixels_per_step`` pixels in increasing order of |r|,
    a_k = Σ_{i∈S_k} |r_i| and v_k = (1/n) Σ_j (f_t(x with S_k ← u_j) − f_t(x))², where u_j is
    uniform noise on [0, 1] per pixel and channel (``fill="uniform"``, Quantus's default) or a fixed
    baseline ("zero", "mean", "blur"; then one sample). ⌈P / s⌉ · n perturbed forward passes.

    Args:
        model: the classifier.
        x: (B, C, H, W) inputs in [0, 1].
        target: (B,) explained classes.
        attribution: Φ(x) (B, C, H, W).
        pixels_per_step: s.
        n_samples: n, noise draws per group.
        fill: "uniform" noise or a fixed baseline.
        output: f_t, "probability" (Quantus) or "logit".
        noise: fixed fills (n_samples, B, C, H, W) instead of uniform draws.
        ids: (B,) example identities for the noise and the tie-breaking order.
        seed: seed of the noise and the order.
        pass_budget: M, images per forward pass (None: the enclosing
            :func:`~metrics.functional.stacking.pass_budget`, else its default).
    """
    step = check_positive_int("pixels_per_step", pixels_per_step)
    n_samples = check_positive_int("n_samples", n_samples)
    _check_choice("fill", fill, NOISE_FILLS)
    _check_choice("output", output, OUTPUTS)
    b, c, h, w = x.shape
    if noise is not None and tuple(noise.shape) != (n_samples, *x.shape):
        raise ValueError(f"noise must have shape (n_samples, *x.shape) = {(n_samples, *x.shape)}, got {tuple(noise.shape)}")
    ids = example_ids(b, ids, x.device)
    relevance = pixel_map(attribution, "sum").flatten(1)  # (B, P)
    ranks = _ascending_ranks(relevance.abs(), seed, ids, _CORRELATION_ORDER_STREAM)  # (B, P)
    n_steps = math.ceil(h * w / step)
    group = ranks // step  # (B, P) the group k of every pixel
    magnitude = torch.zeros(b, n_steps, dtype=torch.float64, device=x.device)
    magnitude.scatter_add_(1, group, relevance.abs().double())  # a_k
    if noise is not None:
        fills = noise.to(x.dtype)
    elif fill == "uniform":
        fills = torch.stack([example_noise((c, h, w), ids, seed, _CORRELATION_NOISE_STREAM, j, dtype=x.dtype) for j in range(n_samples)])
    else:
        fills = removal_baseline(x, fill).unsqueeze(0)  # type: ignore[arg-type]
    clean = target_scores(model, x, target, output=output).double()  # (B,)
    group_map = group.view(b, 1, h, w)
    n_fills = fills.shape[0]

    def build(item: int, examples: slice) -> Tensor:  # item = k · n_fills + j: group k, fill j
        k, j = divmod(item, n_fills)
        return torch.where(group_map[examples] == k, fills[j, examples], x[examples])

    scores = stacked_scores(model, n_steps * n_fills, build, x, target, output, pass_budget).double()  # (B, T·n)
    change = (scores.view(b, n_steps, n_fills) - clean.view(b, 1, 1)).pow(2).mean(dim=2)  # v_k
    return spearman(magnitude, change)


# ---------------------------------------------------------------------------------------------
# ROAD


def road_curve(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    attribution: Tensor,
    *,
    percentages: Sequence[float] = (10, 20, 30, 40, 50, 60, 70, 80, 90),
    order: str = "morf",
    output: str = "accuracy",
    noise_std: float = 0.01,
    ids: Tensor | None = None,
    seed: int = 0,
) -> Tensor:
    """ROAD per example and percentage (B, Q): is the target still predicted (or p_t) after the
    ⌊q·P/100⌋ most (MoRF) or least (LeRF) relevant pixels are imputed (Rong et al. 2022).

    Args:
        model: the classifier.
        x: (B, C, H, W) inputs.
        target: (B,) explained classes.
        attribution: Φ(x) (B, C, H, W).
        percentages: the q's in [0, 100) (the authors: 10..90; Quantus: 1, 3, …, 99).
        order: "morf" (most relevant first) or "lerf" (least relevant first).
        output: "accuracy" (1 when argmax f(x_q) = t, the paper's curve) or "probability" (p_t).
        noise_std: standard deviation of the imputation noise (the authors: 0.01; 0 for none).
        ids: (B,) example identities for the noise and the tie-breaking order.
        seed: seed of the noise and the order.
    """
    _check_choice("order", order, ROAD_ORDERS)
    _check_choice("output", output, ROAD_OUTPUTS)
    qs = [float(q) for q in percentages]
    if not qs or any(not 0 <= q < 100 for q in qs):
        raise ValueError(f"percentages must be a non-empty list of numbers in [0, 100), got {list(percentages)!r}")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std!r}")
    b, c, h, w = x.shape
    ids = example_ids(b, ids, x.device)
    relevance = pixel_map(attribution, "sum").flatten(1)
    ranks = relevance_order_ranks(relevance if order == "morf" else -relevance, seed, ids, _ROAD_ORDER_STREAM)
    ranks = ranks.view(b, 1, h, w)
    out = []
    for j, q in enumerate(qs):
        removed = ranks < int(h * w * q / 100)
        noise = example_noise((c, h, w), ids, seed, _ROAD_NOISE_STREAM, j, "normal", x.dtype) if noise_std > 0 else None
        image = noisy_linear_imputation(x, removed, noise, noise_std)
        if output == "accuracy":
            out.append((predicted(model, image) == target).float())
        else:
            out.append(target_scores(model, image, target, output="probability"))
    return torch.stack(out, dim=1)  # (B, Q)


def road(model: nn.Module, x: Tensor, target: Tensor, attribution: Tensor, **options: object) -> Tensor:
    """ROAD per example (B,): the mean of :func:`road_curve` over the percentages."""
    return road_curve(model, x, target, attribution, **options).mean(dim=1)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Region removal: IROF and selectivity


def require_slic() -> Callable[..., object]:
    """scikit-image's ``slic``, or a ValueError saying how to install it (before any work starts)."""
    try:
        from skimage.segmentation import slic
    except ImportError as error:
        raise ValueError(
            "segmentation 'slic' needs scikit-image, an optional dependency: pip install scikit-image "
            "(or the project's extra: pip install -e '.[hog]'); or choose segmentation='grid'"
        ) from error
    return slic


def grid_segments(batch: int, height: int, width: int, patch_size: int, device: torch.device) -> Tensor:
    """Labels (B, H, W) of square patch_size patches, row-major (the last row/column may be cut)."""
    patch_size = check_positive_int("patch_size", patch_size)
    rows = torch.arange(height, device=device) // patch_size
    cols = torch.arange(width, device=device) // patch_size
    labels = rows.view(-1, 1) * math.ceil(width / patch_size) + cols.view(1, -1)
    return labels.expand(batch, height, width)


def slic_segments(x: Tensor, n_segments: int = 100, compactness: float = 10.0) -> Tensor:
    """SLIC superpixel labels (B, H, W), 0..K_i−1 per image (Achanta et al., TPAMI 2012; scikit-image,
    called as Quantus does: channels last, float64, ``start_label=0``)."""
    slic = require_slic()
    labels = []
    for image in x.detach().cpu().double().numpy():
        segments = slic(image.transpose(1, 2, 0), n_segments=n_segments, compactness=compactness, start_label=0)
        labels.append(torch.unique(torch.from_numpy(segments).long(), return_inverse=True)[1])
    return torch.stack(labels).to(x.device)


def region_removal_curve(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    labels: Tensor,
    region_relevance: Tensor,
    filler: Tensor,
    output: Output,
    seed: int,
    ids: Tensor | None,
    stream: int,
    pass_budget: int | None = None,
) -> tuple[Tensor, Tensor]:
    """f_t after removing the k most relevant regions, k = 0..K_max: ((B, K_max + 1), K (B,)).

    Args:
        labels: (B, H, W) region of every pixel, 0..K_i − 1.
        region_relevance: (B, K_max) score of every region (ignored past K_i).
        filler: (B, C, H, W) what removed pixels become.
    """
    b, _, h, w = x.shape
    counts = labels.flatten(1).max(dim=1).values + 1  # K_i
    k_max = int(counts.max())
    exists = torch.arange(k_max, device=x.device).view(1, -1) < counts.view(-1, 1)
    keyed = torch.where(exists, region_relevance.double(), torch.full_like(region_relevance.double(), -math.inf))
    region_rank = relevance_order_ranks(keyed, seed, ids, stream)  # (B, K_max), 0 = most relevant
    pixel_rank = region_rank.gather(1, labels.flatten(1)).view(b, 1, h, w)

    def build(k: int, examples: slice) -> Tensor:  # the k most relevant regions removed
        return torch.where(pixel_rank[examples] < k, filler[examples], x[examples])

    return stacked_scores(model, k_max + 1, build, x, target, output, pass_budget), counts


def area_on_unit_axis(curve: Tensor, counts: Tensor) -> Tensor:
    """Trapezoid area of curve[i, 0..K_i] on an evenly spaced [0, 1] axis: (B,)."""
    k = torch.arange(curve.shape[1], device=curve.device).view(1, -1)
    inside = (k <= counts.view(-1, 1)).to(curve.dtype)
    last = curve.gather(1, counts.view(-1, 1)).squeeze(1)
    return ((curve * inside).sum(dim=1) - 0.5 * (curve[:, 0] + last)) / counts.to(curve.dtype)


def irof_curve(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    attribution: Tensor,
    *,
    segmentation: str = "slic",
    n_segments: int = 100,
    compactness: float = 10.0,
    patch_size: int = 4,
    baseline: Removal = "mean",
    output: Output = "probability",
    ids: Tensor | None = None,
    seed: int = 0,
    pass_budget: int | None = None,
) -> tuple[Tensor, Tensor]:
    """IROF's curve c_k = f_t(x_k) / f_t(x), k = 0..K_max, and the segment counts K_i: ((B, K_max + 1), (B,)).

    Args:
        model: the classifier.
        x: (B, C, H, W) inputs.
        target: (B,) explained classes.
        attribution: Φ(x) (B, C, H, W).
        segmentation: "slic" superpixels (the paper; needs scikit-image) or a fixed "grid" of
            patch_size squares (a departure: no dependency, regions ignore the image's content).
        n_segments: SLIC's target number of segments.
        compactness: SLIC's colour/space trade-off.
        patch_size: side of the grid's squares.
        baseline: fill of removed regions ("mean": the image's per-channel mean, as the paper).
        output: f_t, "probability" (the paper, Quantus) or "logit".
        ids: (B,) example identities for the tie-breaking order.
        seed: seed of the tie-breaking order.
        pass_budget: M, images per forward pass (None: the enclosing
            :func:`~metrics.functional.stacking.pass_budget`, else its default).
    """
    _check_choice("segmentation", segmentation, SEGMENTATIONS)
    _check_choice("output", output, OUTPUTS)
    b, _, h, w = x.shape
    if segmentation == "slic":
        labels = slic_segments(x, check_positive_int("n_segments", n_segments), compactness)
    else:
        labels = grid_segments(b, h, w, patch_size, x.device)
    relevance = pixel_map(attribution, "sum").flatten(1).double()  # (B, P)
    k_max = int(labels.max()) + 1
    flat = labels.flatten(1)
    sums = torch.zeros(b, k_max, dtype=torch.float64, device=x.device).scatter_add_(1, flat, relevance)
    sizes = torch.zeros(b, k_max, dtype=torch.float64, device=x.device).scatter_add_(1, flat, torch.ones_like(relevance))
    means = sums / sizes.clamp_min(1.0)
    curve, counts = region_removal_curve(
        model, x, target, labels, means, removal_baseline(x, baseline), output, seed, ids, _IROF_ORDER_STREAM,
        pass_budget,
    )
    return curve / curve[:, :1], counts


def irof(model: nn.Module, x: Tensor, target: Tensor, attribution: Tensor, **options: object) -> Tensor:
    """IROF per example (B,): 1 − area under c_k over the fraction of segments removed (higher is
    more faithful). Options: :func:`irof_curve`.

    Quantus reports K − trapz(c_1..c_K) (dx = 1, unperturbed point left out): K times this
    score plus (1 + c_1)/2, on the same curve.
    """
    curve, counts = irof_curve(model, x, target, attribution, **options)  # type: ignore[arg-type]
    return 1.0 - area_on_unit_axis(curve, counts)


def selectivity_curve(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    attribution: Tensor,
    *,
    patch_size: int = 4,
    baseline: Removal = "zero",
    output: Output = "probability",
    ids: Tensor | None = None,
    seed: int = 0,
    pass_budget: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Selectivity's curve f_t(x_k) after removing the k most relevant patches, k = 0..K: ((B, K + 1), (B,)).

    Args:
        model: the classifier.
        x: (B, C, H, W) inputs.
        target: (B,) explained classes.
        attribution: Φ(x) (B, C, H, W); a patch's relevance is its sum.
        patch_size: side of the square patches (Quantus: 8; a 28-pixel image needs 4 or 7 to
            tile; otherwise the last row and column of patches are cut, where Quantus pads).
        baseline: fill of removed patches ("zero": Montavon et al.'s removal).
        output: f_t, "probability" (Quantus) or "logit".
        ids: (B,) example identities for the tie-breaking order.
        seed: seed of the tie-breaking order.
        pass_budget: M, images per forward pass (None: the enclosing
            :func:`~metrics.functional.stacking.pass_budget`, else its default).
    """
    _check_choice("output", output, OUTPUTS)
    b, _, h, w = x.shape
    labels = grid_segments(b, h, w, patch_size, x.device)
    relevance = pixel_map(attribution, "sum").flatten(1).double()
    k = int(labels.max()) + 1
    sums = torch.zeros(b, k, dtype=torch.float64, device=x.device).scatter_add_(1, labels.flatten(1), relevance)
    return region_removal_curve(
        model, x, target, labels, sums, removal_baseline(x, baseline), output, seed, ids, _SELECTIVITY_ORDER_STREAM,
        pass_budget,
    )


def selectivity(model: nn.Module, x: Tensor, target: Tensor, attribution: Tensor, **options: object) -> Tensor:
    """Selectivity per example (B,): area under f_t over the fraction of patches removed (lower is
    more faithful). Options: :func:`selectivity_curve`."""
    curve, counts = selectivity_curve(model, x, target, attribution, **options)  # type: ignore[arg-type]
    return area_on_unit_axis(curve, counts)


# ---------------------------------------------------------------------------------------------
# Sufficiency


def explanation_distances(maps: Tensor, distance: str = "seuclidean") -> Tensor:
    """Pairwise distances of flattened explanations (B, B) in float64.

    "seuclidean" (Quantus's default, scipy's ``cdist``): sqrt(Σ_d (a_d − b_d)² / V_d) with V_d the
    variance (ddof = 1) of feature d over the batch (scipy's ``cdist(X, X)`` estimates it on X
    stacked twice, a constant factor that :func:`sufficiency`'s division by the largest distance
    cancels); features constant over the batch are left out (scipy gives NaN there).
    "euclidean": the plain L2 distance.
    """
    _check_choice("distance", distance, DISTANCES)
    flat = maps.flatten(1).double()  # (B, D)
    if distance == "seuclidean":
        if flat.shape[0] < 2:
            raise ValueError("distance 'seuclidean' needs at least 2 examples to estimate the feature variances")
        variance = flat.var(dim=0, unbiased=True)
        keep = variance > 0
        flat = flat[:, keep] / variance[keep].sqrt()
    return torch.cdist(flat, flat)


def sufficiency(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    attribution: Tensor,
    *,
    threshold: float = 0.6,
    distance: str = "seuclidean",
) -> Tensor:
    """Sufficiency per example (B,) against the batch as reference set (Dasgupta et al. 2022).

    With d_ij the explanation distance divided by the largest d in the batch (Quantus's
    ``normalise_by_max``) and N_i = {j ≠ i : d_ij ≤ threshold},
    score_i = |{j ∈ N_i : ŷ_j = ŷ_i}| / |N_i|, and 0 when N_i is empty (as Quantus). ŷ is the
    model's prediction; ``target`` is not used (kept for the common signature).

    Args:
        model: the classifier.
        x: (B, C, H, W) inputs.
        target: (B,) unused.
        attribution: Φ(x) (B, C, H, W); compared as pixel maps Σ_c Φ_c.
        threshold: the largest normalised distance of an explanation still "the same".
        distance: "seuclidean" (Quantus) or "euclidean".
    """
    del target
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1] (distances are divided by the largest), got {threshold!r}")
    distances = explanation_distances(pixel_map(attribution, "sum"), distance)
    top = distances.max()
    distances = distances / top if top > 0 else distances
    eye = torch.eye(distances.shape[0], dtype=torch.bool, device=distances.device)
    near = (distances <= threshold) & ~eye  # (B, B)
    classes = predicted(model, x)
    agree = (near & (classes.view(-1, 1) == classes.view(1, -1))).sum(dim=1).double()
    n_near = near.sum(dim=1).double()
    return torch.where(n_near > 0, agree / n_near.clamp_min(1.0), torch.zeros_like(n_near)).float()
