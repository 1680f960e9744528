"""AWP: the perturbation's size and direction, an exact SGD step at the perturbed point applied
to the unperturbed weights, BatchNorm statistics as an ordinary step leaves them, and DDP."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks import PGD
from lightning_modules import build_model
from losses import (
    AWP,
    ERM,
    MART,
    TRADES,
    InputGradientPenalty,
    Part,
    PGDAdversarialTraining,
    StepContext,
    WeightedSum,
    kl_divergence,
    perturbed_parameters,
)
from losses.base import attack_key
from tests.tiny import shapes_batch

GAMMA = 0.05


def bn_cnn(seed: int = 0) -> nn.Module:
    """small_cnn with BatchNorm, in training mode (batch statistics, running ones updated)."""
    torch.manual_seed(seed)
    model = build_model(
        "small_cnn", 3, (1, 16, 16), (0.5,), (0.25,), backbone_kwargs={"width": 4, "hidden": 8, "batch_norm": True}
    )
    return model.train()


def plain_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("small_cnn", 3, (1, 16, 16), (0.5,), (0.25,), backbone_kwargs={"width": 4, "hidden": 8})


def pgd_at_loss(model: nn.Module, x: Tensor, x_adv: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(model(x_adv), y)


def trades_loss(model: nn.Module, x: Tensor, x_adv: Tensor, y: Tensor) -> Tensor:
    logits = model(x)
    return F.cross_entropy(logits, y) + 6.0 * kl_divergence(logits, model(x_adv)).mean()


# Seeded attacks: every example's start is drawn from its own generator, so the hand computation
# gets the objective's adversarial examples by running the same attack.
CASES = {
    "pgd_at_train_mode_attack": (
        lambda: PGDAdversarialTraining(PGD(eps=0.1, step_size=0.04, steps=2, seed=3, model_mode="train")),
        lambda model, x, y: PGD(eps=0.1, step_size=0.04, steps=2, seed=3, model_mode="train")(model, x, y),
        pgd_at_loss,
    ),
    "trades": (
        lambda: TRADES(beta=6.0, attack=PGD(eps=0.1, step_size=0.04, steps=2, seed=3)),
        lambda model, x, y: TRADES(attack=PGD(eps=0.1, step_size=0.04, steps=2, seed=3)).adversarial_example(
            model, x, PGD(eps=0.1, step_size=0.04, steps=2, seed=3), None
        ),
        trades_loss,
    ),
}


def hand_step(model: nn.Module, x: Tensor, y: Tensor, attack, loss_fn, gamma: float, lr: float):
    """The AWP step written out on copies of the model: (v, weights after SGD, .grad, buffers)."""
    reference = copy.deepcopy(model)
    x_adv = attack(reference, x, y)  # at w, with the model's BatchNorm (a train-mode attack updates it)
    proxy = copy.deepcopy(reference)  # the authors' proxy: its statistics are thrown away
    names = [n for n, p in proxy.named_parameters() if p.dim() > 1]
    params = dict(proxy.named_parameters())
    grads = torch.autograd.grad(loss_fn(proxy, x, x_adv, y), [params[n] for n in names])
    v = {n: gamma * params[n].detach().norm() * g / g.norm() for n, g in zip(names, grads)}
    weights = {n: p.detach().clone() for n, p in reference.named_parameters()}
    with torch.no_grad():
        for n, p in reference.named_parameters():
            if n in v:
                p.add_(v[n])
    loss_fn(reference, x, x_adv, y).backward()  # at w + v: the gradient, and the BatchNorm update
    grad = {n: p.grad.detach().clone() for n, p in reference.named_parameters()}
    after = {n: weights[n] - lr * grad[n] for n in weights}
    buffers = {n: b.detach().clone() for n, b in reference.named_buffers()}
    return v, after, grad, buffers


@pytest.mark.parametrize("case", list(CASES))
def test_awp_step_equals_sgd_at_the_perturbed_point_applied_to_the_weights(case: str) -> None:
    build, attack, loss_fn = CASES[case]
    model, (x, y), lr = bn_cnn(), shapes_batch(8), 0.1
    v, expected_after, expected_grad, expected_buffers = hand_step(model, x, y, attack, loss_fn, GAMMA, lr)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)

    out = AWP(build(), gamma=GAMMA)(model, x, y)
    out.loss.backward()
    # Before the step: the weights are w itself, bit for bit; .grad is ∇L(w + v).
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected_grad[n], rtol=1e-5, atol=1e-7, msg=n)
    # BatchNorm statistics as after an ordinary step at w + v (the ascent's forward left no trace).
    for n, b in model.named_buffers():
        torch.testing.assert_close(b, expected_buffers[n], rtol=1e-6, atol=1e-7, msg=n)
    optimizer.step()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), expected_after[n], rtol=1e-5, atol=1e-7, msg=n)
    assert out.logs["unperturbed_loss"] < out.loss  # the perturbation ascends


def test_perturbation_has_norm_gamma_w_along_the_loss_gradient_for_kernels_only() -> None:
    model, (x, y) = bn_cnn(), shapes_batch(8)
    awp = AWP(PGDAdversarialTraining(PGD(eps=0.1, step_size=0.04, steps=2, seed=1)), gamma=GAMMA)
    context = StepContext()
    awp.prepare(model, x, y, context)
    v, _ = awp.weight_perturbation(model, x, y, context)
    params = dict(model.named_parameters())
    kernels = {n for n, p in params.items() if p.dim() > 1}
    assert set(v) == kernels == set(perturbed_parameters(model))
    assert not any(n.endswith("bias") for n in v) and not any(params[n].dim() == 1 for n in v)  # nor BatchNorm

    x_adv = context.get(("adversarial", attack_key(awp.objective.attack)), lambda: None)
    # Differentiate a copy in training mode as the ascent does (a copy: its BatchNorm update is discarded).
    twin = copy.deepcopy(model)
    twin_params = dict(twin.named_parameters())
    grads = torch.autograd.grad(F.cross_entropy(twin(x_adv), y), [twin_params[n] for n in v])
    for (name, dv), g in zip(v.items(), grads):
        torch.testing.assert_close(dv.norm(), GAMMA * params[name].detach().norm(), rtol=1e-5, atol=0)
        assert F.cosine_similarity(dv.flatten(), g.flatten(), dim=0) > 1 - 1e-5, name
    assert all(p.grad is None for p in model.parameters())  # the ascent filled no .grad


def test_objective_state_advances_once_per_step_and_the_regulariser_stays_at_w() -> None:
    """The ε warm-up counts AWP's steps once; a regulariser summed outside AWP sees w, not w + v."""
    model, (x, y) = plain_cnn(), shapes_batch(8)
    inner = PGDAdversarialTraining(PGD(eps=0.1, step_size=0.04, steps=2, seed=1), eps_warmup_steps=4)
    objective = WeightedSum([Part(AWP(inner, gamma=GAMMA)), Part(ERM())])
    for step in range(2):
        out = objective(model, x, y)
        assert out.logs["awp/eps"] == pytest.approx(0.1 * (step + 1) / 4)
    assert int(inner.warmup.steps_done) == 2
    torch.testing.assert_close(out.logs["erm/ce"], F.cross_entropy(model(x), y).detach())


def test_no_perturbation_before_start_step() -> None:
    model, (x, y) = plain_cnn(), shapes_batch(8)
    inner = PGDAdversarialTraining(PGD(eps=0.1, step_size=0.04, steps=2, seed=1))
    awp = AWP(inner, gamma=GAMMA, start_step=1)
    first, plain = awp(model, x, y), inner(model, x, y)
    assert "unperturbed_loss" not in first.logs and torch.equal(first.loss, plain.loss)
    second = awp(model, x, y)
    assert second.logs["unperturbed_loss"] == plain.loss.detach() and second.loss > plain.loss
    assert int(awp.steps_seen) == 2


def test_awp_wraps_mart_and_sums_with_a_double_backprop_penalty() -> None:
    model, (x, y) = bn_cnn(), shapes_batch(8)
    objective = AWP(
        WeightedSum([Part(MART(attack=PGD(eps=0.1, step_size=0.04, steps=2))), Part(InputGradientPenalty(), 0.1)]),
        gamma=GAMMA,
    )
    out = objective(model, x, y)
    out.loss.backward()
    assert torch.isfinite(out.loss) and all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert {"mart", "mart/bce", "input_gradient", "unperturbed_loss"} <= set(out.logs)


@pytest.mark.parametrize(
    "build, field",
    [
        (lambda: AWP(PGDAdversarialTraining(), gamma=0.0), "gamma"),
        (lambda: AWP(PGDAdversarialTraining(), start_step=-1), "start_step"),
        (lambda: AWP(lambda *a: None), "objective"),  # type: ignore[arg-type]
        (lambda: AWP(AWP(PGDAdversarialTraining())), "objective"),
    ],
)
def test_bad_settings_name_the_field(build, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field} must"):
        build()


def test_float16_autocast_is_refused() -> None:
    model, (x, y) = plain_cnn(), shapes_batch(4)
    with torch.autocast("cpu", dtype=torch.float16), pytest.raises(RuntimeError, match="bf16-mixed"):
        AWP(PGDAdversarialTraining(PGD(eps=0.1, step_size=0.04, steps=1)))(model, x, y)
