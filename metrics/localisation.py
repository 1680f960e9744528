"""Localisation against ground truth: object masks (pointing game, relevance mass and rank) and
the masks of a spurious artifact (spurious share).

Scores are NaN where undefined (an empty mask, no relevance at all), so such examples are left
out of the mean rather than counted as failures or successes. Numerics in
:mod:`metrics.functional.localisation`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from attributions import pixel_map
from common.mosaics import mosaics_around
from metrics.base import MeanScore, MetricInputs, check_boolean, check_integer
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


class MaskTopKIntersection(MeanScore, name="mask_topk_intersection"):
    """Top-k intersection with the mask (Theiner, Müller-Budack & Ewerth, WACV 2022): the share
    of the k most relevant pixels of R = Σ_c Φ_c that lie in the mask, ties at the k-th value
    counted by their expected share. Higher is better (at most |mask| / k).

    Args:
        k: pixels counted; None is 10 % of the pixels.
    """

    higher_is_better = True
    requires = ("masks",)

    def __init__(self, k: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.k = check_integer("k", k, 1, optional=True)

    def score(self, inputs: MetricInputs) -> Tensor:
        return localisation.mask_topk_intersection(inputs.signed_maps, inputs.masks, k=self.k)  # type: ignore[arg-type]


class MaskAUC(MeanScore, name="mask_auc"):
    """ROC AUC of R = Σ_c Φ_c as a pixel classifier of the mask (Fawcett 2006), ties counted
    half: P(R_in > R_out) + ½ P(R_in = R_out). 1 for a map equal to the mask, 0.5 for a constant
    map. Higher is better; NaN for an empty or full mask."""

    higher_is_better = True
    requires = ("masks",)

    def score(self, inputs: MetricInputs) -> Tensor:
        return localisation.mask_auc(inputs.signed_maps, inputs.masks)  # type: ignore[arg-type]


class Focus(MeanScore, name="focus"):
    """Focus (Arias-Duart, Parés, Garcia-Gasulla & Giménez-Ábalos, FUZZ-IEEE 2022) on one 2 × 2
    mosaic per example (:func:`common.mosaics.mosaics_around`): the example and another image of
    its class as the target tiles, two images of other classes, all from the same batch; the
    method explains the mosaic for the target class and the score is the share of its positive
    relevance Σ_c Φ_c on the target quadrants. Higher is better; NaN for an example without a
    partner of its class or two images of other classes in its batch.

    The partners come from the batch, so an example's score depends on the batch it sits in (a
    probe set split over processes scores differently from the same set in one): compare runs
    at one batch size and world size.

    Args:
        half_size: tiles average-pooled 2 × 2, so the mosaic has the input size (any model); False
            keeps full-resolution tiles (2H × 2W: models with global pooling).
        seed: seed of the partners and positions (per example).
    """

    higher_is_better = True
    batch_dependent: ClassVar[bool] = True

    def __init__(self, half_size: bool = True, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.half_size = check_boolean("half_size", half_size)
        self.seed = check_integer("seed", seed, 0)

    def score(self, inputs: MetricInputs) -> Tensor:
        mosaics = mosaics_around(inputs.x, inputs.target, seed=self.seed, ids=inputs.ids, half_size=self.half_size)
        try:
            attribution = inputs.method(inputs.model, mosaics.images, mosaics.labels)
        except RuntimeError as error:
            if self.half_size:
                raise
            raise ValueError(
                f"focus with half_size=False needs a model that accepts {tuple(mosaics.images.shape[1:])} mosaics "
                "(global pooling); use half_size=True"
            ) from error
        scores = localisation.focus(pixel_map(attribution, "sum"), mosaics.quadrants)
        return scores.masked_fill(~mosaics.defined, float("nan"))  # type: ignore[operator]
