"""Gradients reach the weights through every objective, and they are the right gradients.

The analytic gradient of each loss with respect to all weights (one backward through the
second-order graph) is compared with central finite differences of the loss along random
directions, on a small float64 softplus network. Random starts are re-seeded before every
evaluation; the adversarial points, masks and directions that an objective derives from signs
and rankings are locally constant in the weights, so the two must agree.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from attacks import PGD, FGSMRandomStart
from losses import (
    TRADES,
    AttributionStability,
    CurvaturePenalty,
    FastAdversarialTraining,
    IGNorm,
    InputGradientPenalty,
    Objective,
    Part,
    PGDAdversarialTraining,
    SaliencyGuidedTraining,
    WeightedSum,
)
from tests.tiny import smooth_mlp

ATTACK = PGD(eps=0.1, step_size=0.04, steps=2)

OBJECTIVES: dict[str, Callable[[], Objective]] = {
    "trades": lambda: TRADES(beta=6.0, attack=ATTACK),
    "fast_at": lambda: FastAdversarialTraining(FGSMRandomStart(eps=0.1), co_check_every=0),
    "saliency_guided": lambda: SaliencyGuidedTraining(kl_weight=1.0, mask_fraction=0.5),
    "input_gradient": lambda: WeightedSum([Part(InputGradientPenalty(), 2.0)]),  # λ = 2 as the part's weight
    "attribution_stability": lambda: AttributionStability(attack=ATTACK),
    "attribution_stability_adversarial": lambda: AttributionStability(perturbation="adversarial", attack=ATTACK),
    "curvature": lambda: WeightedSum([Part(CurvaturePenalty(finite_difference_step=0.5), 4.0)]),
    "ig_norm": lambda: IGNorm(riemann_steps=4, attack=ATTACK),
    "pgd_at+stability": lambda: WeightedSum(
        [
            Part(PGDAdversarialTraining(ATTACK), 1.0),
            Part(AttributionStability(perturbation="ce_adversarial", attack=ATTACK), 0.5),
        ]
    ),
}


def loss_at(objective: Objective, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    torch.manual_seed(0)
    return objective(model, x, y).loss


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_weight_gradient_matches_finite_differences(name: str) -> None:
    model = smooth_mlp(12)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(6, 1, 3, 4, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (6,), generator=generator)
    objective = OBJECTIVES[name]()
    params = list(model.parameters())

    grads = torch.autograd.grad(loss_at(objective, model, x, y), params, allow_unused=True, materialize_grads=True)
    assert sum(float(g.abs().sum()) for g in grads) > 0, "no gradient reached the weights"

    for trial in range(3):
        directions = [torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in params]
        analytic = sum(float((g * d).sum()) for g, d in zip(grads, directions))
        t = 1e-6
        with torch.no_grad():
            for p, d in zip(params, directions):
                p.add_(t * d)
        plus = float(loss_at(objective, model, x, y).detach())
        with torch.no_grad():
            for p, d in zip(params, directions):
                p.sub_(2 * t * d)
        minus = float(loss_at(objective, model, x, y).detach())
        with torch.no_grad():
            for p, d in zip(params, directions):
                p.add_(t * d)
        numeric = (plus - minus) / (2 * t)
        assert numeric == pytest.approx(analytic, rel=1e-5, abs=1e-8), f"direction {trial}"
