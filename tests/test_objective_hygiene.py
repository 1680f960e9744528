"""Every objective leaves the model's modes, the weights' .grad and the input as it found them."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from attacks import PGD, FGSMRandomStart
from lightning_modules import build_model
from losses import (
    AWP,
    ERM,
    MART,
    TRADES,
    AttributionStability,
    CurvaturePenalty,
    FastAdversarialTraining,
    IGNorm,
    IGSumNorm,
    InputGradientPenalty,
    Objective,
    Part,
    PGDAdversarialTraining,
    SaliencyGuidedTraining,
    WeightedSum,
)
from tests.tiny import shapes_batch

ATTACK = PGD(eps=0.1, step_size=0.04, steps=2)
OBJECTIVES: dict[str, Callable[[], Objective]] = {
    "erm": lambda: ERM(),
    "pgd_at": lambda: PGDAdversarialTraining(ATTACK),
    "trades": lambda: TRADES(attack=ATTACK),
    "mart": lambda: MART(attack=ATTACK),
    "awp": lambda: AWP(TRADES(attack=ATTACK)),
    "fast_at": lambda: FastAdversarialTraining(FGSMRandomStart(eps=0.1), co_check_every=1),
    "saliency_guided": lambda: SaliencyGuidedTraining(),
    "input_gradient": lambda: InputGradientPenalty(),
    "attribution_stability": lambda: AttributionStability(perturbation="adversarial", attack=ATTACK),
    "curvature": lambda: CurvaturePenalty(),
    "ig_norm": lambda: IGNorm(riemann_steps=2, attack=ATTACK),
    "ig_sum_norm": lambda: IGSumNorm(riemann_steps=2, attack=ATTACK),
    "weighted_sum": lambda: WeightedSum([Part(PGDAdversarialTraining(ATTACK)), Part(InputGradientPenalty())]),
}


@pytest.mark.parametrize("name", list(OBJECTIVES))
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_objective_leaves_model_weights_and_input_alone(name: str, mode: str) -> None:
    torch.manual_seed(0)
    model = build_model(
        "small_cnn", 3, (1, 16, 16), (0.5,), (0.25,), backbone_kwargs={"width": 4, "hidden": 8, "batch_norm": True}
    )
    model.train(mode == "train")
    model.net.features[1].eval()  # a submodule that disagrees with the root must keep its flag too
    flags = [m.training for m in model.modules()]
    x, y = shapes_batch(8)
    x_before = x.clone()

    OBJECTIVES[name]()(model, x, y)

    assert [m.training for m in model.modules()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert not x.requires_grad and x.grad is None
    assert torch.equal(x, x_before)
