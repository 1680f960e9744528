"""Sanity check by cascading model-parameter randomisation, as a per-layer metric."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from metrics.base import MetricInputs, PerLayerScores, check_choice, check_integer
from metrics.functional.randomisation import RANDOMISATION_SIMILARITIES, cascading_randomisation
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
