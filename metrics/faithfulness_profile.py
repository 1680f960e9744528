"""The faithfulness profile as metrics: faithfulness correlation, monotonicity (Arya et al.;
Nguyen & Martínez), ROAD, IROF, selectivity, sufficiency.

Numerics, formulas, papers and the differences from Quantus in
:mod:`metrics.functional.faithfulness_profile`; random draws and tie-breaks follow (``seed``,
the example's id).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from metrics.base import MeanScore, MetricInputs, check_choice, check_integer, check_number
from metrics.functional import faithfulness_profile as profile
from metrics.functional.faithfulness import REMOVALS


class FaithfulnessCorrelation(MeanScore, name="faithfulness_correlation"):
    """Faithfulness correlation (Bhatt, Weller & Moura, IJCAI 2020): Pearson correlation over
    random pixel subsets S_j of Σ_{i∈S_j} Φ_i and the logit drop when S_j is removed.

    Args:
        subset_size: |S| in pixels (None: 10 % of the pixels).
        n_runs: subsets per example (one forward pass each).
        baseline: what removed pixels become: "zero", "mean" or "blur".
        seed: seed of the subsets.
    """

    higher_is_better = True

    def __init__(self, subset_size: int | None = None, n_runs: int = 100, baseline: str = "zero", seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.subset_size = check_integer("subset_size", subset_size, 1, optional=True)
        self.n_runs = check_integer("n_runs", n_runs, 2)
        self.baseline = check_choice("baseline", baseline, REMOVALS)
        self.seed = check_integer("seed", seed, 0)

    def score(self, inputs: MetricInputs) -> Tensor:
        return profile.faithfulness_correlation(
            inputs.model, inputs.x, inputs.target, inputs.attribution, subset_size=self.subset_size,
            n_runs=self.n_runs, baseline=self.baseline, ids=inputs.ids, seed=self.seed,  # type: ignore[arg-type]
        )  # fmt: skip


class Monotonicity(MeanScore, name="monotonicity"):
    """Monotonicity (Arya et al. 2019): 1 when f_t never falls as pixels are restored into the
    baseline in increasing order of relevance, else 0; the mean is the share of monotone maps.

    Args:
        pixels_per_step: pixels restored per step (one forward pass each).
        baseline: the image pixels are restored into: "zero", "mean" or "blur".
        output: f_t, the target's "probability" or "logit".
        seed: seed of the tie-breaking order.
    """

    higher_is_better = True

    def __init__(self, pixels_per_step: int = 1, baseline: str = "zero", output: str = "probability", seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pixels_per_step = check_integer("pixels_per_step", pixels_per_step, 1)
        self.baseline = check_choice("baseline", baseline, REMOVALS)
        self.output = check_choice("output", output, profile.OUTPUTS)
        self.seed = check_integer("seed", seed, 0)

    def score(self, inputs: MetricInputs) -> Tensor:
        return profile.monotonicity(
            inputs.model, inputs.x, inputs.target, inputs.attribution, pixels_per_step=self.pixels_per_step,
            baseline=self.baseline, output=self.output, ids=inputs.ids, seed=self.seed,  # type: ignore[arg-type]
        )  # fmt: skip


class MonotonicityCorrelation(MeanScore, name="monotonicity_correlation"):
    """Monotonicity correlation (Nguyen & Martínez 2020): Spearman correlation of a pixel group's
    |relevance| and the mean squared output change when only that group is replaced by noise.

    Args:
        pixels_per_step: pixels per group.
        n_samples: noise draws per group (one forward pass each).
        fill: "uniform" noise on [0, 1], or a fixed "zero", "mean" or "blur" (then one sample).
        output: f_t, the target's "probability" or "logit".
        seed: seed of the noise and the order.
    """

    higher_is_better = True

    def __init__(
        self, pixels_per_step: int = 1, n_samples: int = 10, fill: str = "uniform", output: str = "probability", seed: int = 0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.pixels_per_step = check_integer("pixels_per_step", pixels_per_step, 1)
        self.n_samples = check_integer("n_samples", n_samples, 1)
        self.fill = check_choice("fill", fill, profile.NOISE_FILLS)
        self.output = check_choice("output", output, profile.OUTPUTS)
        self.seed = check_integer("seed", seed, 0)

    def score(self, inputs: MetricInputs) -> Tensor:
        return profile.monotonicity_correlation(
            inputs.model, inputs.x, inputs.target, inputs.attribution, pixels_per_step=self.pixels_per_step,
            n_samples=self.n_samples, fill=self.fill, output=self.output, ids=inputs.ids, seed=self.seed,  # type: ignore[arg-type]
        )  # fmt: skip


class _Road(MeanScore):
    """ROAD (Rong et al., ICML 2022) in one removal order; options in :class:`RoadMoRF`."""

    order = "morf"

    def __init__(self, percentages: tuple[float, ...], output: str, noise_std: float, seed: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        values = tuple(percentages) if isinstance(percentages, (list, tuple)) else None
        if not values or any(isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 <= q < 100 for q in values):
            raise ValueError(f"percentages must be a non-empty list of numbers in [0, 100), got {percentages!r}")
        self.percentages = values
        self.output = check_choice("output", output, profile.ROAD_OUTPUTS)
        self.noise_std = check_number("noise_std", noise_std, 0.0)
        self.seed = check_integer("seed", seed, 0)

    def score(self, inputs: MetricInputs) -> Tensor:
        return profile.road(
            inputs.model, inputs.x, inputs.target, inputs.attribution, percentages=self.percentages, order=self.order,
            output=self.output, noise_std=self.noise_std, ids=inputs.ids, seed=self.seed,
        )  # fmt: skip


class RoadMoRF(_Road, name="road_morf"):
    """ROAD, most relevant first: the mean over q of [argmax f(x_q) = t] (or p_t), where x_q has its
    q % most relevant pixels filled by noisy linear imputation. Lower is more faithful.

    Args:
        percentages: the q's in [0, 100) (the authors: 10..90).
        output: "accuracy" (the paper's curve) or "probability".
        noise_std: standard deviation of the imputation noise (the authors: 0.01).
        seed: seed of the noise and the tie-breaking order.
    """

    higher_is_better = False
    order = "morf"

    def __init__(
        self, percentages: tuple[float, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90), output: str = "accuracy",
        noise_std: float = 0.01, seed: int = 0, **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(percentages, output, noise_std, seed, **kwargs)


class RoadLeRF(_Road, name="road_lerf"):
    """ROAD, least relevant first: as :class:`RoadMoRF` with the q % least relevant pixels
    imputed. Higher is more faithful."""

    higher_is_better = True
    order = "lerf"

    def __init__(
        self, percentages: tuple[float, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90), output: str = "accuracy",
        noise_std: float = 0.01, seed: int = 0, **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(percentages, output, noise_std, seed, **kwargs)


class IROF(MeanScore, name="irof"):
    """IROF (Rieger & Hansen 2020): superpixels removed in decreasing order of mean relevance;
    1 − the area under p_t(x_k)/p_t(x) over the fraction removed. Higher is more faithful.

    Args:
        segmentation: "slic" superpixels (needs scikit-image) or a fixed "grid" (a departure).
        n_segments: SLIC's target number of segments.
        compactness: SLIC's colour/space trade-off.
        patch_size: side of the grid's squares.
        baseline: fill of removed regions: "mean" (the paper), "zero" or "blur".
        output: f_t, the target's "probability" or "logit".
        seed: seed of the tie-breaking order.
    """

    higher_is_better = True

    def __init__(
        self, segmentation: str = "slic", n_segments: int = 100, compactness: float = 10.0, patch_size: int = 4,
        baseline: str = "mean", output: str = "probability", seed: int = 0, **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.segmentation = check_choice("segmentation", segmentation, profile.SEGMENTATIONS)
        if self.segmentation == "slic":
            profile.require_slic()
        self.n_segments = check_integer("n_segments", n_segments, 1)
        self.compactness = check_number("compactness", compactness, 0.0, strict=True)
        self.patch_size = check_integer("patch_size", patch_size, 1)
        self.baseline = check_choice("baseline", baseline, REMOVALS)
        self.output = check_choice("output", output, profile.OUTPUTS)
        self.seed = check_integer("seed", seed, 0)

    def score(self, inputs: MetricInputs) -> Tensor:
        return profile.irof(
            inputs.model, inputs.x, inputs.target, inputs.attribution, segmentation=self.segmentation,
            n_segments=self.n_segments, compactness=self.compactness, patch_size=self.patch_size,
            baseline=self.baseline, output=self.output, ids=inputs.ids, seed=self.seed,
        )  # fmt: skip


class Selectivity(MeanScore, name="selectivity"):
    """Selectivity (Montavon, Samek & Müller 2018): square patches removed in decreasing order of
    summed relevance; the area under p_t over the fraction removed. Lower is more faithful.

    Args:
        patch_size: side of the patches.
        baseline: fill of removed patches: "zero", "mean" or "blur".
        output: f_t, the target's "probability" or "logit".
        seed: seed of the tie-breaking order.
    """

    higher_is_better = False

    def __init__(self, patch_size: int = 4, baseline: str = "zero", output: str = "probability", seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.patch_size = check_integer("patch_size", patch_size, 1)
        self.baseline = check_choice("baseline", baseline, REMOVALS)
        self.output = check_choice("output", output, profile.OUTPUTS)
        self.seed = check_integer("seed", seed, 0)

    def score(self, inputs: MetricInputs) -> Tensor:
        return profile.selectivity(
            inputs.model, inputs.x, inputs.target, inputs.attribution, patch_size=self.patch_size,
            baseline=self.baseline, output=self.output, ids=inputs.ids, seed=self.seed,
        )  # fmt: skip
