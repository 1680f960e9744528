"""Complexity: how concentrated an explanation is — sparseness (Gini), complexity (entropy),
effective complexity. They read the per-pixel map Σ_c |Φ_c| only (no model call). Numerics and
the conventions chosen in :mod:`metrics.functional.complexity`.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from metrics.base import MeanScore, MetricInputs, check_number
from metrics.functional import complexity as functional


class Sparseness(MeanScore, name="sparseness"):
    """Gini index of the per-pixel map (Chalasani, Chen, Chowdhury, Wu & Jha, ICML 2020):
    G = Σ_i (2i − d − 1) r_(i) / (d Σ r), r sorted increasingly; (d − 1)/d for a one-hot map, 0 for
    a constant one. Higher is sparser."""

    higher_is_better = True

    def score(self, inputs: MetricInputs) -> Tensor:
        return functional.sparseness(inputs.attribution).float()


class Complexity(MeanScore, name="complexity"):
    """Entropy of the fractional per-pixel relevance (Bhatt, Weller & Moura, IJCAI 2020):
    −Σ p_i log p_i, p = r / Σ r; log d for a uniform map. Lower is simpler."""

    higher_is_better = False

    def score(self, inputs: MetricInputs) -> Tensor:
        return functional.complexity(inputs.attribution).float()


class EffectiveComplexity(MeanScore, name="effective_complexity"):
    """Pixels whose relevance exceeds ε times the example's largest (Nguyen & Martínez 2020's
    thresholded proxy, as Quantus, but relative to the example rather than the batch). Lower is
    simpler.

    Args:
        threshold: ε, in [0, 1) (not named ``eps``, which the report fills with the attack radius).
    """

    higher_is_better = False

    def __init__(self, threshold: float = 1e-5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold = check_number("threshold", threshold, 0.0, 1.0)
        if self.threshold >= 1.0:
            raise ValueError(f"threshold must be a number >= 0.0 and < 1.0, got {threshold!r}")

    def score(self, inputs: MetricInputs) -> Tensor:
        return functional.effective_complexity(inputs.attribution, eps=self.threshold).float()
