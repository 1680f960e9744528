"""Objectives under autocast: bf16 works for all; float16 is refused by second-order penalties."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from attacks import PGD, FGSMRandomStart
from losses import (
    AWP,
    ERM,
    MART,
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
from tests.tiny import shapes_batch, tiny_cnn

ATTACK = PGD(eps=0.1, step_size=0.04, steps=2)
SECOND_ORDER: dict[str, Callable[[], Objective]] = {
    "input_gradient": lambda: InputGradientPenalty(),
    "attribution_stability": lambda: AttributionStability(attack=ATTACK),
    "curvature": lambda: CurvaturePenalty(),
    "ig_norm": lambda: IGNorm(riemann_steps=3, attack=ATTACK),
}
ALL: dict[str, Callable[[], Objective]] = {
    "erm": lambda: ERM(),
    "pgd_at": lambda: PGDAdversarialTraining(ATTACK),
    "trades": lambda: TRADES(attack=ATTACK),
    "mart": lambda: MART(attack=ATTACK),
    "awp": lambda: AWP(TRADES(attack=ATTACK)),
    "fast_at": lambda: FastAdversarialTraining(FGSMRandomStart(eps=0.1), co_check_every=1),
    "saliency_guided": lambda: SaliencyGuidedTraining(),
    **SECOND_ORDER,
}


@pytest.mark.parametrize("name", list(ALL))
def test_every_objective_trains_under_bf16_autocast(name: str) -> None:
    model = tiny_cnn()
    x, y = shapes_batch(8)
    objective = WeightedSum([Part(ERM()), Part(ALL[name]())]) if name in SECOND_ORDER else ALL[name]()
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = objective(model, x, y)
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("name", ["input_gradient", "trades"])
def test_bf16_loss_is_close_to_float32(name: str) -> None:
    """The bf16 value of a double-backprop penalty and of TRADES tracks the float32 one."""
    model = tiny_cnn(seed=1)
    x, y = shapes_batch(16)
    objective = InputGradientPenalty() if name == "input_gradient" else TRADES(attack=PGD(eps=0.1, seed=0))
    reference = objective(model, x, y).loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = objective(model, x, y).loss
    torch.testing.assert_close(mixed, reference, rtol=0.05, atol=1e-4)


@pytest.mark.parametrize("name", list(SECOND_ORDER))
def test_float16_autocast_is_refused_by_second_order_penalties(name: str) -> None:
    model = tiny_cnn()
    x, y = shapes_batch(4)
    with torch.autocast("cpu", dtype=torch.float16), pytest.raises(RuntimeError, match="16-mixed"):
        SECOND_ORDER[name]()(model, x, y)
