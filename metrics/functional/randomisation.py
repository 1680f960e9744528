"""Sanity check by cascading model-parameter randomisation (Adebayo, Gilmer, Muelly, Goodfellow,
Hardt & Kim, "Sanity Checks for Saliency Maps", NeurIPS 2018).

On a copy of the model, the layers with parameters are re-initialised one after the other from
the top (the logits) down, cumulatively; after each one the explanation of the same class is
computed again and compared with the original by Spearman's rank correlation of the |Φ| maps,
by SSIM of the maps rescaled to [0, 1] and, on request (scikit-image needed), by the rank
correlation of their HOG features, the paper's three similarities. An explanation that depends on
what the model learnt loses similarity as more layers are randomised; a model-independent one
(the edge detector) stays at 1. The model passed in is never modified.

Result shape: per example and per randomisation stage, (B, L) for L layers with parameters;
column l is the similarity after re-initialising the top l + 1 layers (column L − 1: the whole
network), and ``layers[l]`` names the layer re-initialised at that stage.

The rest of the family (below :func:`cascading_randomisation`): :func:`random_logit` (Sixt et
al. 2020), :func:`independent_randomisation` and :func:`smoothed_randomisation` (Hedström et al.
2023), and :func:`model_perturbation` (small Gaussian weight noise). All work on copies of the
model, restore the caller's RNG streams, and draw their noise per example or per parameter
(streams 40–42) so that a batch split over processes scores as in one.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from attributions import AttributionMethod, pixel_map
from attributions.base import normal_tensor
from attributions.maps import MAP_REDUCTIONS, MapReduction
from common.example_noise import example_ids, example_noise, example_seed
from common.modes import module_mode
from common.similarity import spearman
from metrics.functional.common import check_positive_int
from metrics.functional.similarity import hog_similarity, require_hog, ssim

RANDOMISATION_SIMILARITIES: tuple[str, ...] = ("spearman", "ssim", "hog")


class RandomisationResult(NamedTuple):
    """Per-layer similarities of the cascading randomisation.

    Attributes:
        layers: names of the re-initialised layers, top (output) first.
        spearman: (B, L) Spearman's ρ of the |Φ| maps, original vs after stage l.
        ssim: (B, L) SSIM of the maps rescaled to [0, 1].
        hog: (B, L) Spearman's ρ of their HOG features, or None when not requested.
    """

    layers: list[str]
    spearman: Tensor
    ssim: Tensor
    hog: Tensor | None = None


def parameter_layers(model: nn.Module, x: Tensor) -> list[str]:
    """Names of the modules with their own parameters and ``reset_parameters``, in the order the
    forward pass of ``x`` first calls them (so "top" means closest to the output)."""
    candidates = {
        module: name
        for name, module in model.named_modules()
        if any(True for _ in module.parameters(recurse=False)) and callable(getattr(module, "reset_parameters", None))
    }
    order: list[str] = []
    handles = [
        module.register_forward_hook(lambda m, args, out: order.append(candidates[m]) if candidates[m] not in order else None)
        for module in candidates
    ]
    try:
        with torch.no_grad(), module_mode(model, "eval"):
            model(normal_tensor(x[:1]))
    finally:
        for handle in handles:
            handle.remove()
    return order


def cascading_randomisation(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    method: AttributionMethod,
    attribution: Tensor | None = None,
    seed: int = 0,
    hog: bool = False,
) -> RandomisationResult:
    """Similarity of the explanation after each stage of cascading re-initialisation.

    Args:
        model: the trained classifier (left untouched; a deep copy is randomised).
        x: (B, C, H, W) inputs.
        target: (B,) explained classes (the same class at every stage).
        method: the attribution method.
        attribution: Φ(x) on the trained model when already computed.
        seed: seed of the re-initialisation (layer l uses seed + l; the global RNG is restored).
        hog: also compute the HOG similarity (needs scikit-image).
    """
    if hog:
        require_hog()  # before any work
    layers = parameter_layers(model, x)
    if not layers:
        raise ValueError("model must have layers with parameters and reset_parameters() to randomise")
    original = pixel_map(method(model, x, target) if attribution is None else attribution)  # (B, H, W)
    with torch.inference_mode(False):  # a copy made under inference mode could not be differentiated
        randomised = copy.deepcopy(model)
    modules = dict(randomised.named_modules())
    cuda_devices = sorted({p.device.index or 0 for p in randomised.parameters() if p.device.type == "cuda"})
    rho, structural, gradients = [], [], []
    for stage, name in enumerate(reversed(layers)):
        with torch.random.fork_rng(devices=cuda_devices):  # leave the caller's RNG streams alone
            torch.manual_seed(seed + stage)
            with torch.no_grad():
                modules[name].reset_parameters()  # type: ignore[operator]
        maps = pixel_map(method(randomised, x, target))
        rho.append(spearman(original, maps))
        structural.append(ssim(original, maps))
        if hog:
            gradients.append(hog_similarity(original, maps))
    return RandomisationResult(
        list(reversed(layers)),
        torch.stack(rho, dim=1),
        torch.stack(structural, dim=1),
        torch.stack(gradients, dim=1) if hog else None,
    )


# ---------------------------------------------------------------------------------------------
# The rest of the randomisation family: random logit, independent and smoothed model-parameter
# randomisation, and the model-perturbation check. One score per example (B,), or (B, L) per
# layer on request; similarities as above ("spearman", "ssim", "hog") on per-pixel maps.

LayerOrder = Literal["independent", "top_down", "bottom_up"]
LAYER_ORDERS: tuple[str, ...] = ("independent", "top_down", "bottom_up")
LAYER_AGGREGATES: tuple[str, ...] = ("mean", "last", "none")
WEIGHT_NOISES: tuple[str, ...] = ("multiplicative", "additive")
_RANDOM_LOGIT_STREAM = 40
_SMOOTHING_STREAM = 41
_WEIGHT_NOISE_STREAM = 42
_LAYER_SEED_STREAM = 43


def layer_seed(seed: int, index: int) -> int:
    """Torch seed of the re-initialisation of layer ``index`` (forward order): a hash of (seed,
    index), so that it never reproduces the draws of a model built right after
    ``torch.manual_seed(seed)`` (``seed + index`` would give layer 0 its original weights back)."""
    return example_seed(seed, _LAYER_SEED_STREAM, index, 0)


def _similarity(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The map similarity called ``name``, checked (and scikit-image found for "hog") up front."""
    if name not in RANDOMISATION_SIMILARITIES:
        raise ValueError(f"similarity must be one of {RANDOMISATION_SIMILARITIES}, got {name!r}")
    if name == "hog":
        require_hog()
        return hog_similarity
    return spearman if name == "spearman" else ssim


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _copy(model: nn.Module) -> nn.Module:
    with torch.inference_mode(False):  # a copy made under inference mode could not be differentiated
        return copy.deepcopy(model)


def _cuda_devices(model: nn.Module) -> list[int]:
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})


def _aggregate(scores: Tensor, aggregate: str) -> Tensor:
    """(B, L) per-layer similarities reduced as asked: "mean" over layers, "last" column, "none"."""
    if aggregate == "none":
        return scores
    if aggregate == "last":
        return scores[:, -1]
    return scores.mean(dim=1)


def random_logit(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    method: AttributionMethod,
    *,
    attribution: Tensor | None = None,
    other: Tensor | None = None,
    similarity: str = "ssim",
    reduction: MapReduction = "sum",
    seed: int = 0,
    ids: Tensor | None = None,
) -> Tensor:
    """Random logit test (Sixt, Granz & Landgraf, "When Explanations Lie: Why Many Modified BP
    Attributions Fail", ICML 2020): similarity of the map for the target and for a random other
    class, per example (B,):

        RL(x) = sim(M(Φ_t(x)), M(Φ_c(x))),   c ~ U({0..K−1} \\ {t}),

    M the per-pixel map (``reduction``: the signed channel sum by default, as Quantus's
    ``abs=False``). Lower is better: an explanation of class t should differ from that of another
    class; one that ignores the class (the edge control) scores 1.

    Sixt et al. compare by SSIM; here SSIM is the 2-D Gaussian-window SSIM of the maps each
    rescaled to [0, 1] (Wang et al. 2004). Quantus's ``RandomLogit`` passes the flattened maps to
    scikit-image's SSIM, a 1-D window of 7 neighbouring values in raster order with the pair's
    joint data range, so its "ssim" differs; with ``similarity="spearman"`` the two agree (its
    max-normalisation is a positive rescaling). The other class is drawn per example from the
    example's id (stream 40), so a batch split over processes draws the same classes.

    Args:
        model: the classifier (its number of classes K is read from its output).
        x: (B, C, H, W) inputs.
        target: (B,) explained classes.
        method: the attribution method.
        attribution: Φ_t(x) when already computed.
        other: fixed other classes (B,) instead of random ones (each ≠ target, in [0, K)).
        similarity: "ssim" (Sixt et al.), "spearman" or "hog".
        reduction: "sum" (signed) or "abs_sum" per-pixel maps.
        seed: seed of the random classes.
        ids: (B,) example identities for the random classes.
    """
    compare = _similarity(similarity)
    _check_choice("reduction", reduction, MAP_REDUCTIONS)
    with torch.no_grad(), module_mode(model, "eval"):
        classes = model(normal_tensor(x[:1])).shape[1]
    if classes < 2:
        raise ValueError(f"random_logit needs a model with at least 2 classes, got {classes}")
    target = target.to(x.device).long()
    if other is None:
        u = example_noise((1,), example_ids(x.shape[0], ids, x.device), seed, _RANDOM_LOGIT_STREAM)[:, 0]
        drawn = (u * (classes - 1)).long().clamp(max=classes - 2)  # uniform on 0..K−2
        other = drawn + (drawn >= target).long()  # skip the target
    else:
        other = other.to(x.device).long()
        if other.shape != target.shape or bool((other == target).any()) or bool(((other < 0) | (other >= classes)).any()):
            raise ValueError(f"other must be (B,) classes in [0, {classes}) that differ from the target (B = {target.shape[0]})")
    explained = method(model, x, target) if attribution is None else attribution
    return compare(pixel_map(explained, reduction), pixel_map(method(model, x, other), reduction))


def _layer_stages(
    model: nn.Module, x: Tensor, order: str, seed: int
) -> Iterator[tuple[str, nn.Module]]:
    """Yield (layer name, randomised copy) stage by stage; the caller's model is never touched.

    Layer i in forward order is re-initialised (its ``reset_parameters``) from torch seed
    :func:`layer_seed` (seed, i) whatever the order, so the independent and cascading checks draw the same
    weights for a layer; the caller's RNG streams are restored. "independent": only layer i is
    random at stage i (forward order); "top_down"/"bottom_up": cumulative from the output / the input.
    """
    layers = parameter_layers(model, x)
    if not layers:
        raise ValueError("model must have layers with parameters and reset_parameters() to randomise")
    randomised = _copy(model)
    modules = dict(randomised.named_modules())
    devices = _cuda_devices(randomised)
    indices = list(range(len(layers)))
    for i in reversed(indices) if order == "top_down" else indices:
        module = modules[layers[i]]
        saved = {k: v.clone() for k, v in module.state_dict().items()} if order == "independent" else None
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(layer_seed(seed, i))
            with torch.no_grad():
                module.reset_parameters()  # type: ignore[operator]
        yield layers[i], randomised
        if saved is not None:
            module.load_state_dict(saved)


def independent_randomisation(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    method: AttributionMethod,
    *,
    attribution: Tensor | None = None,
    similarity: str = "spearman",
    reduction: MapReduction = "abs_sum",
    aggregate: str = "mean",
    seed: int = 0,
) -> Tensor:
    """Independent (non-cascading) model-parameter randomisation (Adebayo et al., NeurIPS 2018,
    "independent randomization"; Hedström et al., "Sanity Checks Revisited: An Exploration to
    Repair the Model Parameter Randomisation Test", XAI in Action workshop, NeurIPS 2023).

    For each layer l with parameters, alone, on a copy: re-initialise l, keep every other layer
    trained, and compare the maps:  s_l(x) = sim(M(Φ_θ(x)), M(Φ_{θ with l random}(x))).
    Lower is better (the explanation depends on every layer); the edge control scores 1.

    Per-layer columns are in forward order (input first); ``aggregate`` gives the mean over the
    layers (B,) (Quantus's ``return_average_correlation``, except that Quantus's average also
    counts the similarity of the original model's explanation with itself, a dictionary key
    mismatch, "orig" vs "original", in ``MPRT.recompute_average_correlation_per_sample``), the
    last column ("last") or all of them ("none": (B, L), names from :func:`parameter_layers`).
    Layer i is re-initialised from torch seed :func:`layer_seed` (seed, i); Quantus seeds every
    layer with ``seed + 1`` (so layers of one shape get the same weights).

    Args:
        model: the trained classifier (left untouched).
        x: (B, C, H, W) inputs.
        target: (B,) explained classes.
        method: the attribution method.
        attribution: Φ_θ(x) when already computed.
        similarity: "spearman" (default, as Quantus), "ssim" or "hog".
        reduction: per-pixel maps, "abs_sum" (Σ_c|Φ_c|, as Adebayo et al.) or "sum".
        aggregate: "mean", "last" or "none".
        seed: seed of the re-initialisations.
    """
    compare = _similarity(similarity)
    _check_choice("reduction", reduction, MAP_REDUCTIONS)
    _check_choice("aggregate", aggregate, LAYER_AGGREGATES)
    original = pixel_map(method(model, x, target) if attribution is None else attribution, reduction)
    scores = [
        compare(original, pixel_map(method(randomised, x, target), reduction))
        for _, randomised in _layer_stages(model, x, "independent", seed)
    ]
    return _aggregate(torch.stack(scores, dim=1), aggregate)


def smoothed_explanation(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    method: AttributionMethod,
    n_samples: int,
    noise_magnitude: float,
    seed: int,
    ids: Tensor | None,
) -> Tensor:
    """(1/N) [Φ(x) + Σ_{j<N−1} Φ(x + σ z_j)], z_j ~ N(0, I) per example (stream 41, sample j),
    σ = noise_magnitude · (max x − min x) per example: Hedström et al.'s sMPRT denoising."""
    ids = example_ids(x.shape[0], ids, x.device)
    flat = x.flatten(1)
    sigma = (noise_magnitude * (flat.max(dim=1).values - flat.min(dim=1).values)).view(-1, *[1] * (x.dim() - 1))
    total = method(model, x, target).detach().clone()
    for j in range(n_samples - 1):
        z = example_noise(tuple(x.shape[1:]), ids, seed, _SMOOTHING_STREAM, j, distribution="normal", dtype=x.dtype)
        total += method(model, x + sigma * z, target).detach()
    return total / n_samples


def smoothed_randomisation(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    method: AttributionMethod,
    *,
    n_samples: int = 50,
    noise_magnitude: float = 0.1,
    order: str = "bottom_up",
    similarity: str = "spearman",
    reduction: MapReduction = "abs_sum",
    aggregate: str = "mean",
    seed: int = 0,
    ids: Tensor | None = None,
) -> Tensor:
    """Smoothed model-parameter randomisation test, sMPRT (Hedström, Weber, Bareeva, Krakowczyk,
    Motzkus, Samek, Lapuschkin & Höhne, "Sanity Checks Revisited: An Exploration to Repair the
    Model Parameter Randomisation Test", XAI in Action workshop, NeurIPS 2023).

    MPRT compares explanations that may be dominated by noise shared by the trained and the
    randomised model (gradient shattering); sMPRT first denoises each explanation by averaging
    it over N noisy copies of the input, as SmoothGrad,

        Φ̄_θ(x) = (1/N) [Φ_θ(x) + Σ_{j=1}^{N−1} Φ_θ(x + ε_j)],  ε_j ~ N(0, σ² I),
        σ = noise_magnitude · (max x − min x),

    and then scores s_l(x) = sim(M(Φ̄_θ(x)), M(Φ̄_{θ_l}(x))) after each randomisation stage l
    (``order``: "bottom_up", cascading from the input, the paper's and Quantus's default;
    "top_down"; or "independent"). Lower is better. As Quantus's ``SmoothMPRT``, the clean
    input is the N-th sample. Differences from Quantus, none of which changes the estimator:
    the same noise ε_j (per example, from its id, stream 41) serves the trained and every
    randomised model (common random numbers: the comparison does not mix in fresh noise),
    Quantus draws new noise for each; layer i is re-initialised from torch seed
    :func:`layer_seed` (seed, i) (Quantus: ``seed + 1`` for every layer); the layer mean leaves
    out the original model's self-similarity that Quantus's average includes (see
    :func:`independent_randomisation`).
    ``explain_func`` given to Quantus's ``SmoothMPRT`` is ignored (it calls ``quantus.explain``).

    Args:
        model: the trained classifier (left untouched).
        x: (B, C, H, W) inputs.
        target: (B,) explained classes.
        method: the attribution method.
        n_samples: N, explanations averaged (N − 1 noisy ones and the clean one).
        noise_magnitude: σ relative to each input's value range.
        order: "bottom_up", "top_down" or "independent".
        similarity: "spearman" (default, as Quantus), "ssim" or "hog".
        reduction: per-pixel maps, "abs_sum" or "sum".
        aggregate: "mean" over the stages, "last" (the whole network random for the cascading
            orders) or "none" ((B, L), stages in randomisation order).
        seed: seed of the noise and of the re-initialisations.
        ids: (B,) example identities for the noise.
    """
    n_samples = check_positive_int("n_samples", n_samples)
    if isinstance(noise_magnitude, bool) or not isinstance(noise_magnitude, (int, float)) or not noise_magnitude >= 0:
        raise ValueError(f"noise_magnitude must be a number >= 0, got {noise_magnitude!r}")
    _check_choice("order", order, LAYER_ORDERS)
    compare = _similarity(similarity)
    _check_choice("reduction", reduction, MAP_REDUCTIONS)
    _check_choice("aggregate", aggregate, LAYER_AGGREGATES)

    def smoothed(net: nn.Module) -> Tensor:
        return pixel_map(smoothed_explanation(net, x, target, method, n_samples, noise_magnitude, seed, ids), reduction)

    original = smoothed(model)
    scores = [compare(original, smoothed(randomised)) for _, randomised in _layer_stages(model, x, order, seed)]
    return _aggregate(torch.stack(scores, dim=1), aggregate)


def model_perturbation(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    method: AttributionMethod,
    *,
    attribution: Tensor | None = None,
    sigma: float = 0.05,
    noise: str = "multiplicative",
    n_samples: int = 10,
    similarity: str = "spearman",
    reduction: MapReduction = "abs_sum",
    seed: int = 0,
) -> Tensor:
    """Model-perturbation check: small Gaussian noise on the weights should barely change a
    faithful explanation. Mean over n perturbed copies θ̃_j of the map similarity (B,):

        MP(x) = (1/n) Σ_j sim(M(Φ_θ(x)), M(Φ_θ̃_j(x))),
        θ̃_j = θ ⊙ (1 + σ ε_j) ("multiplicative") or θ + σ ε_j ("additive"),  ε_j ~ N(0, I).

    Multiplicative noise N(1, σ²) on every parameter (buffers such as BatchNorm statistics
    untouched) is the model sampling of NoiseGrad (Bykov, Hedström, Nakajima & Höhne, AAAI 2022)
    and of Quantus's ``PyTorchModel.sample``; it scales with each weight, so σ means the same in
    every layer. Higher is better; read it next to the randomisation checks: the edge control
    scores 1 here too (it ignores the model), and only an explanation that is stable under small
    weight noise yet changes under re-initialisation passes both. Quantus has no such metric.

    The noise of parameter k (``named_parameters`` order) in sample j depends on (seed, k, j)
    only (stream 42), never on the batch: every process and batch sees the same θ̃_j.

    Args:
        model: the trained classifier (left untouched; a copy is perturbed).
        x: (B, C, H, W) inputs.
        target: (B,) explained classes.
        method: the attribution method.
        attribution: Φ_θ(x) when already computed.
        sigma: σ, the noise scale (relative for "multiplicative").
        noise: "multiplicative" or "additive".
        n_samples: n, perturbed copies.
        similarity: "spearman" (default), "ssim" or "hog".
        reduction: per-pixel maps, "abs_sum" or "sum".
        seed: seed of the weight noise.
    """
    n_samples = check_positive_int("n_samples", n_samples)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma >= 0:
        raise ValueError(f"sigma must be a number >= 0, got {sigma!r}")
    _check_choice("noise", noise, WEIGHT_NOISES)
    compare = _similarity(similarity)
    _check_choice("reduction", reduction, MAP_REDUCTIONS)
    original = pixel_map(method(model, x, target) if attribution is None else attribution, reduction)
    perturbed = _copy(model)
    pairs = [(p, q) for p, q in zip(model.parameters(), perturbed.parameters())]
    scores = []
    for j in range(n_samples):
        with torch.no_grad():
            for k, (p, q) in enumerate(pairs):
                key = torch.tensor([k], device=p.device)
                eps = example_noise(tuple(p.shape), key, seed, _WEIGHT_NOISE_STREAM, j, "normal", p.dtype)[0]
                q.copy_(p * (1 + sigma * eps) if noise == "multiplicative" else p + sigma * eps)
        scores.append(compare(original, pixel_map(method(perturbed, x, target), reduction)))
    return torch.stack(scores, dim=1).mean(dim=1)
