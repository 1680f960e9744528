"""Infidelity: does the explanation predict how the output changes under noise?"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from metrics.base import MeanScore, MetricInputs, check_boolean, check_integer, check_positive
from metrics.functional.infidelity import infidelity


class Infidelity(MeanScore, name="infidelity"):
    """Infidelity (Yeh, Hsieh, Suggala, Inouye & Ravikumar, "On the (In)fidelity and Sensitivity
    of Explanations", NeurIPS 2019):

        INFD(Φ, f, x) = E_I[ (Iᵀ Φ(x) − (f_t(x) − f_t(x − I)))² ],    I ~ N(0, σ² Id)

    estimated with n samples, f_t the target's logit. With ``normalize`` Φ is first rescaled by
    the optimal β = E[IᵀΦ · Δf] / E[(IᵀΦ)²] (Yeh et al., Captum's ``normalize=True``), so an
    explanation right up to a scale is not penalised. Lower is better. Each sample is one
    forward pass of the batch; numerics in :func:`metrics.functional.infidelity`.

    Args:
        sigma: σ of the Gaussian perturbations I.
        n_samples: n.
        normalize: rescale Φ by β first.
        seed: seed of the draws (keyed by the examples' ids).
    """

    higher_is_better = False

    def __init__(self, sigma: float = 0.1, n_samples: int = 50, normalize: bool = True, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sigma = check_positive("sigma", sigma)
        self.n_samples = check_integer("n_samples", n_samples, 1)
        self.normalize = check_boolean("normalize", normalize)
        self.seed = check_integer("seed", seed, 0)

    def score(self, inputs: MetricInputs) -> Tensor:
        return infidelity(
            inputs.model, inputs.x, inputs.target, inputs.method, sigma=self.sigma, n_samples=self.n_samples,
            normalize=self.normalize, attribution=inputs.attribution, seed=self.seed, ids=inputs.ids,
        )  # fmt: skip
