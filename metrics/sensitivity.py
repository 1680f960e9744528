"""Sensitivity of explanations to small random input changes: max/avg-sensitivity, local Lipschitz.

Numerics in :mod:`metrics.functional.sensitivity`; every draw is keyed by (``seed``, the
example's id), so scores do not depend on the batching. Lower is more stable for all.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from metrics.base import MeanScore, MetricInputs, check_integer, check_positive
from metrics.functional import sensitivity


class _Sensitivity(MeanScore):
    """Shared by the four sensitivity metrics: one set of samples ‖Φ(x + δ_j) − Φ(x)‖ / Z per
    (radius, n, seed, relative), reduced by max or mean."""

    higher_is_better = False
    relative: ClassVar[bool] = True
    reduction: ClassVar[str] = "max"

    def __init__(self, radius: float, n_samples: int, seed: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.radius = check_positive("radius", radius)
        self.n_samples = check_integer("n_samples", n_samples, 1)
        self.seed = check_integer("seed", seed, 0)

    def score(self, inputs: MetricInputs) -> Tensor:
        options = {"radius": self.radius, "n_samples": self.n_samples, "seed": self.seed}
        samples = inputs.memo(
            ("sensitivity", self.relative, tuple(sorted(options.items()))),
            lambda: sensitivity.sensitivity_samples(
                inputs.model, inputs.x, inputs.target, inputs.method, relative=self.relative,
                attribution=inputs.attribution, ids=inputs.ids, **options,
            ),
        )  # (B, n)
        return samples.max(dim=1).values if self.reduction == "max" else samples.mean(dim=1)


class MaxSensitivity(_Sensitivity, name="max_sensitivity"):
    """Max-sensitivity, Captum's relative form (Yeh, Hsieh, Suggala, Inouye & Ravikumar, "On the
    (In)fidelity and Sensitivity of Explanations", NeurIPS 2019; Captum ``sensitivity_max``):

        SENS_max(x) = max_j ‖Φ(x + δ_j) − Φ(x)‖_F / ‖Φ(x)‖_F,   δ_j ~ U(L∞ ball of radius r)

    (Z = 1 when Φ(x) = 0); x + δ is not clipped to [0, 1], as in both references.

    Args:
        radius: r (Captum's 0.02).
        n_samples: n (Captum's 10).
        seed: seed of the draws.
    """

    def __init__(self, radius: float = 0.02, n_samples: int = 10, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(radius, n_samples, seed, **kwargs)


class AvgSensitivity(_Sensitivity, name="avg_sensitivity"):
    """Average-sensitivity, relative form (Yeh et al., NeurIPS 2019):
    SENS_avg(x) = (1/n) Σ_j ‖Φ(x + δ_j) − Φ(x)‖_F / ‖Φ(x)‖_F. Options as :class:`MaxSensitivity`."""

    reduction = "mean"

    def __init__(self, radius: float = 0.02, n_samples: int = 10, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(radius, n_samples, seed, **kwargs)


class MaxSensitivityAbs(_Sensitivity, name="max_sensitivity_abs"):
    """Max-sensitivity, Yeh et al.'s absolute form and MNIST settings (their definition and code):
    SENS_max(x) = max_j ‖Φ(x + δ_j) − Φ(x)‖_F, r = 0.2, n = 50."""

    relative = False

    def __init__(self, radius: float = 0.2, n_samples: int = 50, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(radius, n_samples, seed, **kwargs)


class AvgSensitivityAbs(_Sensitivity, name="avg_sensitivity_abs"):
    """Average-sensitivity, Yeh et al.'s absolute form: (1/n) Σ_j ‖Φ(x + δ_j) − Φ(x)‖_F, r = 0.2, n = 50."""

    relative = False
    reduction = "mean"

    def __init__(self, radius: float = 0.2, n_samples: int = 50, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(radius, n_samples, seed, **kwargs)


class LocalLipschitz(MeanScore, name="local_lipschitz"):
    """Sampled local Lipschitz estimate (Alvarez-Melis & Jaakkola, "On the Robustness of
    Interpretability Methods", ICML workshop 2018):

        L(x) = max_j ‖Φ(x + δ_j) − Φ(x)‖₂ / ‖δ_j‖₂,   δ_j ~ U(L∞ ball of radius ε)

    Every sample is one attribution call on the whole batch. Lower is more stable.

    Args:
        radius: ε.
        n_samples: samples j.
        seed: seed of the draws.
    """

    higher_is_better = False

    def __init__(self, radius: float = 0.1, n_samples: int = 20, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.radius = check_positive("radius", radius)
        self.n_samples = check_integer("n_samples", n_samples, 1)
        self.seed = check_integer("seed", seed, 0)

    def score(self, inputs: MetricInputs) -> Tensor:
        return sensitivity.local_lipschitz(
            inputs.model, inputs.x, inputs.target, inputs.method, radius=self.radius, n_samples=self.n_samples,
            attribution=inputs.attribution, seed=self.seed, ids=inputs.ids,
        )  # fmt: skip
