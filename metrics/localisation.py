"""Localisation against ground truth: object masks (pointing game, relevance mass and rank) and
the masks of a spurious artifact (spurious share).

Scores are NaN where undefined (an empty mask, no relevance at all), so such examples are left
out of the mean rather than counted as failures or successes. Numerics in
:mod:`metrics.functional.localisation`.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from metrics.base import MeanScore, MetricInputs, check_integer
from metrics.functional import localisation


class PointingGame(MeanScore, name="pointing_game"):
    """Pointing game (Zhang, Bargal, Lin, Brandt, Shen & Sclaroff, "Top-down Neural Attention by
    Excitation Backprop", ECCV 2016 / IJCV 2018): 1 when the most relevant pixel of Σ_c Φ_c lies
    in the mask (dilated by ``tolerance`` pixels), else 0; with ties, a hit when any maximum lies
    inside. Higher is better.

    Args:
        tolerance: dilation of the mask, in pixels.
    """

    higher_is_better = True
    requires = ("masks",)

    def __init__(self, tolerance: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tolerance = check_integer("tolerance", tolerance, 0)

    def score(self, inputs: MetricInputs) -> Tensor:
        return localisation.pointing_game(inputs.signed_maps, inputs.masks, tolerance=self.tolerance)  # type: ignore[arg-type]


class RelevanceMass(MeanScore, name="relevance_mass"):
    """Relevance mass accuracy (Arras, Osman & Samek, "CLEVR-XAI", Information Fusion 2022): the
    share of the positive relevance inside the mask, Σ_{mask} R⁺ / Σ R⁺, R = Σ_c Φ_c. Higher is
    better."""

    higher_is_better = True
    requires = ("masks",)

    def score(self, inputs: MetricInputs) -> Tensor:
        return localisation.relevance_mass(inputs.signed_maps, inputs.masks)  # type: ignore[arg-type]


class RelevanceRank(MeanScore, name="relevance_rank"):
    """Relevance rank accuracy (Arras, Osman & Samek 2022): with K = |mask|, the share of the K
    most relevant pixels of R = Σ_c Φ_c that lie in the mask. Higher is better.

    Args:
        seed: seed of the tie-breaking order (per example).
    """

    higher_is_better = True
    requires = ("masks",)

    def __init__(self, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seed = check_integer("seed", seed, 0)

    def score(self, inputs: MetricInputs) -> Tensor:
        return localisation.relevance_rank(inputs.signed_maps, inputs.masks, seed=self.seed, ids=inputs.ids)  # type: ignore[arg-type]


class SpuriousShare(MeanScore, name="spurious_share"):
    """Share of the attribution mass Σ_c |Φ_c| on a spurious artifact (the corner patch of the
    synthetic data): Σ_{patch} M / Σ M. Lower is better; NaN for images without the patch."""

    higher_is_better = False
    requires = ("spurious_masks",)

    def score(self, inputs: MetricInputs) -> Tensor:
        return localisation.spurious_share(inputs.maps, inputs.spurious_masks)  # type: ignore[arg-type]
