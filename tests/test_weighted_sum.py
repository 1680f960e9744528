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
    total = WeightedSum([Part(ERM(), 1.0), Part(InputGradientPenalty(), 1.5)])(model, x, y)
    erm = ERM()(model, x, y).loss
    penalty = InputGradientPenalty()(model, x, y).loss
    torch.testing.assert_close(total.loss, erm + 1.5 * penalty)
    assert set(total.logs) == {
        "erm",
        "erm/ce",
        "input_gradient",
        "input_gradient/penalty",
        "input_gradient/grad_norm_sq",
    }
    torch.testing.assert_close(total.logs["input_gradient"], penalty.detach())  # unweighted: R, not λ·R
    torch.testing.assert_close(total.logs["input_gradient/penalty"], penalty.detach())
    torch.testing.assert_close(total.logits, model(x))  # the first part that returns logits


def test_a_weight_of_zero_removes_the_part_from_the_loss() -> None:
    model = tiny_cnn()
    x, y = shapes_batch(8)
    out = WeightedSum([Part(ERM(), 2.0), Part(InputGradientPenalty(), 0.0)])(model, x, y)
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
        assert [k for k in context.computed if k[0] == "adversarial"] == [("adversarial", (id(ATTACK), calls[0]))]
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


# ---------------------------------------------------------------------------------------------
# Sharing an attack is declared (the sum's shared_attack, share_attack on the parts), not inferred.


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    original = PGD.perturb

    def counting_perturb(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(repr(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PGD, "perturb", counting_perturb)
    return calls


def _pgd_at_and_stability(declared: bool, warmup: int = 0) -> WeightedSum:
    """PGD-AT + attribution stability at its example, with two equal attacks written apart."""
    first = PGD(eps=0.1, step_size=0.04, steps=2)
    second = PGD(eps=0.1, step_size=0.04, steps=2)  # equal settings, another object
    parts = [
        Part(PGDAdversarialTraining(first, eps_warmup_steps=warmup), share_attack=declared),
        Part(AttributionStability(perturbation="ce_adversarial", attack=second, eps_warmup_steps=warmup), 0.5, share_attack=declared),
    ]
    return WeightedSum(parts, shared_attack=PGD(eps=0.1, step_size=0.04, steps=2) if declared else None)


def test_equal_attacks_share_their_example_only_when_declared(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting(monkeypatch)
    model = tiny_cnn()
    x, y = shapes_batch(8)
    with pytest.warns(UserWarning, match="declare the attack once as the sum's `shared_attack`"):
        undeclared = _pgd_at_and_stability(declared=False)
    undeclared(model, x, y)
    assert len(calls) == 2  # written alike is not shared
    declared = _pgd_at_and_stability(declared=True, warmup=4)
    assert declared.parts[0].attack is declared.parts[1].attack is declared.shared_attack
    for step in range(3):  # ε ramps in both parts in step, one attack per step
        calls.clear()
        out = declared(model, x, y, StepContext())
        assert len(calls) == 1, f"step {step}: {calls}"
        assert {"pgd_at/ce_adv", "attribution_stability/cosine"} <= set(out.logs)


def test_a_declared_shared_step_equals_the_step_computed_by_hand() -> None:
    """CE(f(x'), y) + w·(1 − meanᵢ cos(∇f_y(xᵢ), ∇f_y(x'ᵢ))) at the one seeded PGD example x',
    and the weights' gradients of that loss: what the textually shared step computed before."""
    model = tiny_cnn(activation="softplus")
    x, y = shapes_batch(8)
    attack = PGD(eps=0.1, step_size=0.04, steps=3, seed=5)  # seeded: x' does not depend on call order
    objective = WeightedSum(
        [
            Part(PGDAdversarialTraining(), share_attack=True),
            Part(AttributionStability(perturbation="ce_adversarial"), 0.5, share_attack=True),
        ],
        shared_attack=attack,
    )
    loss = objective(model, x, y).loss
    got = torch.autograd.grad(loss, list(model.parameters()))

    x_adv = attack(model, x, y)
    x_leaf, x_adv_leaf = x.clone().requires_grad_(True), x_adv.clone().requires_grad_(True)
    logits_adv = model(x_adv_leaf)
    g = torch.autograd.grad(model(x_leaf).gather(1, y[:, None]).sum(), [x_leaf], create_graph=True)[0]
    g_adv = torch.autograd.grad(logits_adv.gather(1, y[:, None]).sum(), [x_adv_leaf], create_graph=True)[0]
    cosine = torch.nn.functional.cosine_similarity(g.flatten(1), g_adv.flatten(1), eps=1e-12).mean()
    expected_loss = torch.nn.functional.cross_entropy(logits_adv, y) + 0.5 * (1.0 - cosine)
    expected = torch.autograd.grad(expected_loss, list(model.parameters()))
    torch.testing.assert_close(loss, expected_loss)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


def test_bad_sharing_declarations_are_refused_naming_the_field() -> None:
    attack = PGD(eps=0.1, step_size=0.04, steps=2)
    with pytest.raises(ValueError, match=r"^parts\[0\]\.share_attack needs the attack to share: set `shared_attack`"):
        WeightedSum([Part(PGDAdversarialTraining(), share_attack=True)])
    with pytest.raises(ValueError, match="^shared_attack is used by no part"):
        WeightedSum([Part(PGDAdversarialTraining())], shared_attack=attack)
    with pytest.raises(ValueError, match=r"^parts\[1\]\.share_attack: ERM has no attack to share"):
        WeightedSum([Part(PGDAdversarialTraining(), share_attack=True), Part(ERM(), share_attack=True)], shared_attack=attack)
    with pytest.raises(ValueError, match=r"^parts\[1\]\.objective\.init_args\.eps_warmup_steps must equal"):
        WeightedSum(
            [
                Part(PGDAdversarialTraining(eps_warmup_steps=3), share_attack=True),
                Part(AttributionStability(perturbation="ce_adversarial", eps_warmup_steps=5), share_attack=True),
            ],
            shared_attack=attack,
        )


@pytest.mark.parametrize("dataset", ["synthetic", "mnist", "fashion_mnist", "cifar10"])
def test_the_pgd_at_stability_recipes_declare_one_attack_for_both_parts(dataset: str) -> None:
    yaml = pytest.importorskip("yaml")
    from jsonargparse import ArgumentParser

    from losses import Objective
    from tests.recipes import recipe_path

    node = yaml.safe_load(recipe_path(f"{dataset}/pgd_at_stability").read_text())["model"]["objective"]
    parser = ArgumentParser()
    parser.add_argument("--objective", type=Objective)
    objective = parser.instantiate_classes(parser.parse_object({"objective": node})).objective
    assert objective.parts[0].attack is objective.parts[1].attack is objective.shared_attack
