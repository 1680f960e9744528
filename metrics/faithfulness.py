"""Faithfulness: does removing what the explanation calls relevant change the output?

Numerics in :mod:`metrics.functional.faithfulness`; ties in the relevance order and random
subsets are drawn per example from (``seed``, the example's id).
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from metrics.base import MeanScore, MetricInputs, check_choice, check_integer, check_positive
from metrics.functional import faithfulness


class _CurveAUC(MeanScore):
    """Area under a deletion or insertion curve (shared by the two)."""

    mode: ClassVar[str] = "deletion"

    def __init__(self, steps: int, baseline: str, blur_sigma: float, seed: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.steps = check_integer("steps", steps, 1)
        self.baseline = check_choice("baseline", baseline, faithfulness.REMOVALS)
        self.blur_sigma = check_positive("blur_sigma", blur_sigma)
        self.seed = check_integer("seed", seed, 0)

    def score(self, inputs: MetricInputs) -> Tensor:
        curve = faithfulness.perturbation_curve(
            inputs.model, inputs.x, inputs.target, inputs.attribution, self.mode,  # type: ignore[arg-type]
            steps=self.steps, baseline=self.baseline, blur_sigma=self.blur_sigma, seed=self.seed, ids=inputs.ids,  # type: ignore[arg-type]
        )  # (B, T + 1)
        return faithfulness.curve_auc(curve)


class DeletionAUC(_CurveAUC, name="deletion_auc"):
    """Area under the deletion curve (Samek, Binder, Montavon, Lapuschkin & Müller, "Evaluating
    the Visualization of What a Deep Neural Network Has Learned", IEEE TNNLS 2017, region
    perturbation most-relevant-first; Petsiuk, Das & Saenko, "RISE", BMVC 2018).

    Pixels ordered by Σ_c Φ_c (most relevant first); in T steps the first ⌊tP/T⌋ are replaced by
    the baseline, the target's softmax probability p_t recorded at t = 0..T, and the score is
    the trapezoid area over a [0, 1] axis. Lower is more faithful (p_t falls fast).

    Args:
        steps: T (one forward pass per step).
        baseline: what removed pixels become: "zero", "mean" or "blur".
        blur_sigma: σ of the Gaussian blur baseline, in pixels.
        seed: seed of the tie-breaking order.
    """

    higher_is_better = False
    mode = "deletion"

    def __init__(self, steps: int = 20, blur_sigma: float = 5.0, seed: int = 0, baseline: str = "zero", **kwargs: Any) -> None:
        super().__init__(steps, baseline, blur_sigma, seed, **kwargs)


class InsertionAUC(_CurveAUC, name="insertion_auc"):
    """Area under the insertion curve (Petsiuk, Das & Saenko, "RISE", BMVC 2018): the most
    relevant pixels are copied from x into the baseline (a blurred x, as Petsiuk et al.) in T
    steps. Higher is more faithful. Options as :class:`DeletionAUC`."""

    higher_is_better = True
    mode = "insertion"

    def __init__(self, steps: int = 20, blur_sigma: float = 5.0, seed: int = 0, baseline: str = "blur", **kwargs: Any) -> None:
        super().__init__(steps, baseline, blur_sigma, seed, **kwargs)


class SensitivityN(MeanScore, name="sensitivity_n"):
    """Sensitivity-n (Ancona, Ceolini, Öztireli & Gross, "Towards better understanding of
    gradient-based attribution methods for Deep Neural Networks", ICLR 2018):

        corr_j( Σ_{i∈S_j} Φ_i(x),  f_t(x) − f_t(x with S_j set to the baseline) ),  |S_j| = n

    the Pearson correlation over random subsets S_j, f_t the target's logit. 1 means the
    attribution predicts the effect of removing any n pixels. One forward pass per subset.

    Args:
        n: pixels per subset (None: 10 % of the pixels).
        n_subsets: subsets S_j.
        baseline: "zero", "mean" or "blur".
        seed: seed of the subsets.
    """

    higher_is_better = True

    def __init__(self, n: int | None = None, n_subsets: int = 100, baseline: str = "zero", seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n = check_integer("n", n, 1, optional=True)
        self.n_subsets = check_integer("n_subsets", n_subsets, 2)
        self.baseline = check_choice("baseline", baseline, faithfulness.REMOVALS)
        self.seed = check_integer("seed", seed, 0)

    def score(self, inputs: MetricInputs) -> Tensor:
        return faithfulness.sensitivity_n(
            inputs.model, inputs.x, inputs.target, inputs.attribution, n=self.n, n_subsets=self.n_subsets,
            baseline=self.baseline, seed=self.seed, ids=inputs.ids,  # type: ignore[arg-type]
        )  # fmt: skip
