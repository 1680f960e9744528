"""Axiomatic properties: completeness (Sundararajan et al. 2017), non-sensitivity (Nguyen &
Martínez 2020) and input invariance (Kindermans et al. 2019). Numerics and the conventions chosen
(and where Quantus 0.6 departs) in :mod:`metrics.functional.axiomatic`. Lower is better for all.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from metrics.base import MeanScore, MetricInputs, check_boolean, check_choice, check_number
from metrics.functional import axiomatic as functional
from metrics.functional.faithfulness import REMOVALS


class Completeness(MeanScore, name="completeness"):
    """|Σ Φ − (f_t(x) − f_t(x̄))|, f_t the target's logit (÷ |Δf| with ``relative``).

    Args:
        baseline: x̄, "zero", "mean" or "blur" (match the method's own baseline).
        relative: divide the gap by |f_t(x) − f_t(x̄)|.
    """

    higher_is_better = False

    def __init__(self, baseline: str = "zero", relative: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.baseline = check_choice("baseline", baseline, REMOVALS)
        self.relative = check_boolean("relative", relative)

    def score(self, inputs: MetricInputs) -> Tensor:
        return functional.completeness(
            inputs.model, inputs.x, inputs.target, inputs.attribution, baseline=self.baseline, relative=self.relative  # type: ignore[arg-type]
        ).float()


class NonSensitivity(MeanScore, name="non_sensitivity"):
    """Pixels where "no relevance" (r_i / max r < ε_Φ) and "no effect when removed"
    (|Δf_t| < ε_f) disagree. One forward pass per pixel per example.

    Args:
        baseline: what a removed pixel becomes: "zero", "mean" or "blur".
        attribution_eps: ε_Φ.
        output_eps: ε_f.
        output: "logit" or "probability".
    """

    higher_is_better = False

    def __init__(
        self,
        baseline: str = "zero",
        attribution_eps: float = 1e-5,
        output_eps: float = 1e-5,
        output: str = "logit",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.baseline = check_choice("baseline", baseline, REMOVALS)
        self.attribution_eps = check_number("attribution_eps", attribution_eps, 0.0)
        self.output_eps = check_number("output_eps", output_eps, 0.0)
        self.output = check_choice("output", output, ("logit", "probability"))

    def score(self, inputs: MetricInputs) -> Tensor:
        return functional.non_sensitivity(
            inputs.model, inputs.x, inputs.target, inputs.attribution, baseline=self.baseline,  # type: ignore[arg-type]
            attribution_eps=self.attribution_eps, output_eps=self.output_eps, output=self.output,
        ).float()


class InputInvariance(MeanScore, name="input_invariance"):
    """max |Φ_f(x) − Φ_f̃(x + c)| / max |Φ_f(x)|, f̃ a copy of the model whose first layer's bias
    absorbs the shift c (the caller's model is never modified); 0 for an invariant method.

    Args:
        shift: c (Kindermans et al.: −1).
    """

    higher_is_better = False

    def __init__(self, shift: float = -1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shift = check_number("shift", shift)

    def score(self, inputs: MetricInputs) -> Tensor:
        return functional.input_invariance(
            inputs.model, inputs.x, inputs.target, inputs.method, attribution=inputs.attribution, shift=self.shift
        ).float()
