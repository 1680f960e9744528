"""WeightedSum: weights apply, parts are logged by name, shared work is done once per step."""

from __future__ import annotations

import pytest
import torch

from attacks import PGD
from losses import (
    ERM,
    AttributionStability,
    InputGradientPenalty,
    Part,
    PGDAdversarialTraining,
    StepContext,
    WeightedSum,
)
from tests.tiny import shapes_batch, tiny_cnn

ATTACK = PGD(eps=0.1, step_size=0.04, steps=2)


def test_weights_apply_and_every_part_is_logged_under_its_name() -> None:
    model = tiny_cnn()
    x, y = shapes_batch(8)
    torch.manual_seed(0)
    total = WeightedSum([Part(ERM(), 1.0), Part(InputGradientPenalty(penalty_weight=3.0), 0.5)])(model, x, y)
    erm = ERM()(model, x, y).loss
    penalty = InputGradientPenalty(penalty_weight=3.0)(model, x, y).loss
    torch.testing.assert_close(total.loss, erm + 0.5 * penalty)
    assert set(total.logs) == {
        "erm",
        "erm/ce",
        "input_gradient",
        "input_gradient/penalty",
        "input_gradient/grad_norm_sq",
    }
    torch.testing.assert_close(total.logs["input_gradient"], penalty.detach())
    torch.testing.assert_close(total.logits, model(x))  # the first part that returns logits


def test_a_weight_of_zero_removes_the_part_from_the_loss() -> None:
    model = tiny_cnn()
    x, y = shapes_batch(8)
    out = WeightedSum([Part(ERM(), 2.0), Part(InputGradientPenalty(10.0), 0.0)])(model, x, y)
    torch.testing.assert_close(out.loss, 2.0 * ERM()(model, x, y).loss)


def test_shared_adversarial_example_is_computed_once_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original = PGD.perturb

    def counting_perturb(self, *args, **kwargs):
        calls.append(repr(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PGD, "perturb", counting_perturb)
    model = tiny_cnn()
    x, y = shapes_batch(8)
    objective = WeightedSum(
        [
            Part(PGDAdversarialTraining(ATTACK, eps_warmup_steps=5)),
            Part(AttributionStability(perturbation="ce_adversarial", attack=ATTACK, eps_warmup_steps=5)),
        ]
    )
    for step in range(3):  # ε ramps in both parts in step, so they keep agreeing
        calls.clear()
        context = StepContext()
        out = objective(model, x, y, context)
        assert len(calls) == 1, f"step {step}: {calls}"
        assert [k for k in context.computed if k[0] == "adversarial"] == [("adversarial", calls[0])]
        assert {"pgd_at/ce_adv", "attribution_stability/cosine"} <= set(out.logs)
    # Different attacks are not conflated.
    calls.clear()
    other = PGD(eps=0.05, step_size=0.02, steps=2)
    WeightedSum(
        [Part(PGDAdversarialTraining(ATTACK)), Part(AttributionStability(perturbation="ce_adversarial", attack=other))]
    )(model, x, y)
    assert len(calls) == 2


def test_clean_forward_is_shared_between_erm_and_a_gradient_penalty() -> None:
    forwards = []
    model = tiny_cnn()
    model.register_forward_hook(lambda module, inputs, output: forwards.append(inputs[0].shape[0]))
    x, y = shapes_batch(8)
    WeightedSum([Part(ERM()), Part(InputGradientPenalty())])(model, x, y)
    assert len(forwards) == 1


def test_forward_at_a_shared_adversarial_example_is_shared_too() -> None:
    forwards = []
    model = tiny_cnn()
    model.register_forward_hook(lambda module, inputs, output: forwards.append(inputs[0].shape[0]))
    x, y = shapes_batch(8)
    WeightedSum(
        [
            Part(PGDAdversarialTraining(ATTACK)),
            Part(AttributionStability(perturbation="ce_adversarial", attack=ATTACK)),
        ]
    )(model, x, y)
    # Two attack steps, one forward at the adversarial example, one clean forward.
    assert len(forwards) == ATTACK.steps + 2


def test_input_requires_grad_and_weights_grad_are_left_as_found() -> None:
    model = tiny_cnn().train()
    x, y = shapes_batch(8)
    WeightedSum([Part(ERM()), Part(InputGradientPenalty()), Part(AttributionStability(attack=ATTACK))])(model, x, y)
    assert not x.requires_grad and x.grad is None
    assert all(p.grad is None for p in model.parameters())
    assert model.training


def test_duplicate_names_need_an_explicit_name() -> None:
    with pytest.raises(ValueError, match="^parts must have distinct names"):
        WeightedSum([Part(ERM()), Part(ERM())])
    objective = WeightedSum([Part(ERM()), Part(ERM(label_smoothing=0.1), name="erm_smooth")])
    assert objective.names == ["erm", "erm_smooth"]


def test_bad_parts_are_refused() -> None:
    with pytest.raises(ValueError, match="^parts must hold at least one"):
        WeightedSum([])
    with pytest.raises(ValueError, match=r"^parts\[1\]\.weight must be >= 0"):
        WeightedSum([Part(ERM()), Part(InputGradientPenalty(), -1.0)])


def test_stop_request_of_a_part_is_passed_on() -> None:
    class Stopping(ERM):
        stop_requested = "collapsed"  # type: ignore[assignment]

    objective = WeightedSum([Part(ERM()), Part(Stopping(), name="watch")])
    assert objective.stop_requested == "watch: collapsed"
    assert WeightedSum([Part(ERM())]).stop_requested is None
