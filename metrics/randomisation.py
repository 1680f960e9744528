"""The randomisation family: cascading model-parameter randomisation as a per-layer metric, and
one score per example for the random logit test, independent and smoothed parameter
randomisation, and the weight-noise check. Numerics in :mod:`metrics.functional.randomisation`."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from attributions.maps import MAP_REDUCTIONS
from metrics.base import MeanScore, MetricInputs, PerLayerScores, check_choice, check_integer, check_number
from metrics.functional.randomisation import (
    LAYER_ORDERS,
    RANDOMISATION_SIMILARITIES,
    WEIGHT_NOISES,
    cascading_randomisation,
    independent_randomisation,
    model_perturbation,
    random_logit,
    smoothed_randomisation,
)
from metrics.functional.similarity import require_hog


class ModelRandomisation(PerLayerScores, name="randomisation"):
    """Cascading model-parameter randomisation (Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim,
    "Sanity Checks for Saliency Maps", NeurIPS 2018).

    On a copy of the model the layers with parameters are re-initialised from the top (the
    logits) down, cumulatively; after each, Φ of the same class is compared with the original:

        s_l(x) = sim(Φ(x; θ), Φ(x; θ with the top l + 1 layers re-initialised))

    Scores are (B, L), one column per re-initialised layer, top layer first (the last column:
    the whole network randomised); the layer names come from
    :func:`metrics.functional.parameter_layers`. Lower is better: an explanation that depends on
    what the model learnt loses similarity (the edge detector stays at 1). The model passed in
    is never modified.

    Args:
        similarity: "spearman" (rank correlation of the |Φ| maps), "ssim" (of the maps rescaled
            to [0, 1]) or "hog" (rank correlation of HOG features; needs scikit-image):
            Adebayo et al.'s three.
        seed: seed of the re-initialisation.
    """

    higher_is_better = False

    def __init__(self, similarity: str = "spearman", seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.similarity = check_choice("similarity", similarity, RANDOMISATION_SIMILARITIES)
        if similarity == "hog":
            require_hog()
        self.seed = check_integer("seed", seed, 0)

    def score(self, inputs: MetricInputs) -> Tensor:
        hog = self.similarity == "hog"
        result = inputs.memo(
            ("randomisation", self.seed, hog),
            lambda: cascading_randomisation(
                inputs.model, inputs.x, inputs.target, inputs.method, inputs.attribution, seed=self.seed, hog=hog
            ),
        )
        return getattr(result, self.similarity)


# ---------------------------------------------------------------------------------------------
# The rest of the family: one score per example, numerics in metrics.functional.randomisation.


def _check_similarity(similarity: str) -> str:
    check_choice("similarity", similarity, RANDOMISATION_SIMILARITIES)
    if similarity == "hog":
        require_hog()
    return similarity


class RandomLogit(MeanScore, name="random_logit"):
    """Random logit test (Sixt, Granz & Landgraf, "When Explanations Lie: Why Many Modified BP
    Attributions Fail", ICML 2020): similarity of the map for the target and for a random other
    class, sim(M(Φ_t(x)), M(Φ_c(x))), c uniform over the other classes (drawn per example).
    Lower is better; an explanation that ignores the class (the edge control) scores 1.
    :func:`metrics.functional.randomisation.random_logit` says where Quantus differs.

    Args:
        similarity: "ssim" (Sixt et al.), "spearman" or "hog".
        reduction: per-pixel maps, "sum" (signed) or "abs_sum".
        seed: seed of the random classes.
    """

    higher_is_better = False

    def __init__(self, similarity: str = "ssim", reduction: str = "sum", seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.similarity = _check_similarity(similarity)
        self.reduction = check_choice("reduction", reduction, MAP_REDUCTIONS)
        self.seed = check_integer("seed", seed, 0)

    def score(self, inputs: MetricInputs) -> Tensor:
        return random_logit(
            inputs.model, inputs.x, inputs.target, inputs.method, attribution=inputs.attribution,
            similarity=self.similarity, reduction=self.reduction, seed=self.seed, ids=inputs.ids,  # type: ignore[arg-type]
        )  # fmt: skip


class IndependentRandomisation(MeanScore, name="independent_randomisation"):
    """Independent (non-cascading) model-parameter randomisation (Adebayo et al., NeurIPS 2018;
    Hedström et al., XAI in Action workshop, NeurIPS 2023): each layer with parameters alone is
    re-initialised on a copy of the model and s_l = sim(M(Φ_θ(x)), M(Φ_{θ, l random}(x))); the
    score is the mean over the layers ("mean") or the input layer's ("last"). Lower is better;
    the edge control scores 1. See :func:`metrics.functional.randomisation.independent_randomisation`.

    Args:
        similarity: "spearman", "ssim" or "hog".
        reduction: per-pixel maps, "abs_sum" (Adebayo et al.) or "sum".
        aggregate: "mean" over the layers or "last" (the last layer in forward order).
        seed: seed of the re-initialisations.
    """

    higher_is_better = False

    def __init__(
        self, similarity: str = "spearman", reduction: str = "abs_sum", aggregate: str = "mean", seed: int = 0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.similarity = _check_similarity(similarity)
        self.reduction = check_choice("reduction", reduction, MAP_REDUCTIONS)
        self.aggregate = check_choice("aggregate", aggregate, ("mean", "last"))
        self.seed = check_integer("seed", seed, 0)

    def score(self, inputs: MetricInputs) -> Tensor:
        return independent_randomisation(
            inputs.model, inputs.x, inputs.target, inputs.method, attribution=inputs.attribution,
            similarity=self.similarity, reduction=self.reduction, aggregate=self.aggregate, seed=self.seed,  # type: ignore[arg-type]
        )  # fmt: skip


class SmoothedRandomisation(MeanScore, name="smoothed_randomisation"):
    """Smoothed model-parameter randomisation, sMPRT (Hedström, Weber, Bareeva, Krakowczyk,
    Motzkus, Samek, Lapuschkin & Höhne, XAI in Action workshop, NeurIPS 2023): each explanation
    is first averaged over N noisy copies of the input (the clean one included),
    Φ̄(x) = (1/N)[Φ(x) + Σ_{j<N} Φ(x + ε_j)], ε_j ~ N(0, σ²), σ = noise_magnitude · (max x − min x),
    then compared as in MPRT after each randomisation stage. Lower is better. See
    :func:`metrics.functional.randomisation.smoothed_randomisation` (and where Quantus differs).

    Args:
        n_samples: N.
        noise_magnitude: σ relative to each input's value range.
        order: "bottom_up" (the paper's), "top_down" or "independent".
        similarity: "spearman", "ssim" or "hog".
        reduction: per-pixel maps, "abs_sum" or "sum".
        aggregate: "mean" over the stages or "last" (whole network random for the cascades).
        seed: seed of the noise and the re-initialisations.
    """

    higher_is_better = False

    def __init__(
        self,
        n_samples: int = 50,
        noise_magnitude: float = 0.1,
        order: str = "bottom_up",
        similarity: str = "spearman",
        reduction: str = "abs_sum",
        aggregate: str = "mean",
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.n_samples = check_integer("n_samples", n_samples, 1)
        self.noise_magnitude = check_number("noise_magnitude", noise_magnitude, 0.0)
        self.order = check_choice("order", order, LAYER_ORDERS)
        self.similarity = _check_similarity(similarity)
        self.reduction = check_choice("reduction", reduction, MAP_REDUCTIONS)
        self.aggregate = check_choice("aggregate", aggregate, ("mean", "last"))
        self.seed = check_integer("seed", seed, 0)

    def score(self, inputs: MetricInputs) -> Tensor:
        return smoothed_randomisation(
            inputs.model, inputs.x, inputs.target, inputs.method, n_samples=self.n_samples,
            noise_magnitude=self.noise_magnitude, order=self.order, similarity=self.similarity,
            reduction=self.reduction, aggregate=self.aggregate, seed=self.seed, ids=inputs.ids,  # type: ignore[arg-type]
        )  # fmt: skip


class ModelPerturbation(MeanScore, name="model_perturbation"):
    """Model-perturbation check: small Gaussian noise on the weights should barely change a
    faithful explanation. Mean over n noisy copies θ̃_j = θ ⊙ (1 + σ ε_j) (or θ + σ ε_j) of
    sim(M(Φ_θ(x)), M(Φ_θ̃_j(x))). Higher is better; read it next to the randomisation checks
    (the edge control scores 1 here too). See :func:`metrics.functional.randomisation.model_perturbation`.

    Args:
        sigma: σ, relative for "multiplicative" noise.
        noise: "multiplicative" (NoiseGrad's, Bykov et al. 2022) or "additive".
        n_samples: n.
        similarity: "spearman", "ssim" or "hog".
        reduction: per-pixel maps, "abs_sum" or "sum".
        seed: seed of the weight noise.
    """

    higher_is_better = True

    def __init__(
        self,
        sigma: float = 0.05,
        noise: str = "multiplicative",
        n_samples: int = 10,
        similarity: str = "spearman",
        reduction: str = "abs_sum",
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sigma = check_number("sigma", sigma, 0.0)
        self.noise = check_choice("noise", noise, WEIGHT_NOISES)
        self.n_samples = check_integer("n_samples", n_samples, 1)
        self.similarity = _check_similarity(similarity)
        self.reduction = check_choice("reduction", reduction, MAP_REDUCTIONS)
        self.seed = check_integer("seed", seed, 0)

    def score(self, inputs: MetricInputs) -> Tensor:
        return model_perturbation(
            inputs.model, inputs.x, inputs.target, inputs.method, attribution=inputs.attribution,
            sigma=self.sigma, noise=self.noise, n_samples=self.n_samples, similarity=self.similarity,
            reduction=self.reduction, seed=self.seed,  # type: ignore[arg-type]
        )  # fmt: skip
