"""The two-gradient penalties share and batch their work without changing a number.

Attribution stability and the curvature penalty take their clean and perturbed input gradients
through :mod:`losses.gradient_pairs` (one forward of both batches where no BatchNorm trains, one
``autograd.grad`` call, the clean gradient shared within a step). Here each is checked against the
formula written out plainly (two forwards, two gradient calls, nothing shared), alone and composed,
for every perturbation mode: the loss and every parameter's gradient agree in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks import PGD
from lightning_modules import build_model
from losses import (
    ERM,
    AttributionStability,
    CurvaturePenalty,
    InputGradientPenalty,
    Objective,
    Part,
    PGDAdversarialTraining,
    StepContext,
    WeightedSum,
    adversarial_example,
)
from losses.attribution_stability import PERTURBATIONS
from losses import gradient_pairs
from losses.gradient_pairs import clean_gradient_key, mixes_examples
from losses.input_gradients import flat_cosine, input_leaf
from tests.tiny import shapes_batch, single_thread  # noqa: F401

ATTACK = PGD(eps=0.1, step_size=0.04, steps=2, seed=3)
LAMBDA = 0.7  # the attribution-stability part's weight


def model_of(activation: str = "softplus", batch_norm: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return build_model(
        "small_cnn",
        3,
        (1, 12, 12),
        (0.5,),
        (0.25,),
        activation=activation,  # type: ignore[arg-type]
        backbone_kwargs={"width": 3, "hidden": 8, "batch_norm": batch_norm},
    ).double()


def batch() -> tuple[Tensor, Tensor]:
    x, y = shapes_batch(6, num_classes=3, size=12)
    return x.double(), y


def logit_gradient(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    leaf = input_leaf(x)
    (grad,) = torch.autograd.grad(model(leaf).gather(1, y[:, None]).sum(), [leaf], create_graph=True)
    return grad


def loss_gradient(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    leaf = input_leaf(x)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(leaf), y, reduction="sum"), [leaf], create_graph=True)
    return grad


def plain_stability(model: nn.Module, x: Tensor, y: Tensor, x_perturbed: Tensor) -> Tensor:
    """1 − meanᵢ cos(g(xᵢ), g(x'ᵢ)) with two forwards and two gradient calls."""
    cosine = flat_cosine(logit_gradient(model, x, y), logit_gradient(model, x_perturbed, y)).mean()
    return 1.0 - cosine


def plain_curvature(objective: CurvaturePenalty, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """meanᵢ ‖∇L(xᵢ + h zᵢ) − ∇L(xᵢ)‖² / h², z = sign(∇L(x)) / ‖sign(∇L(x))‖."""
    h = objective.finite_difference_step
    grad = loss_gradient(model, x, y)
    z = grad.detach().sign()
    z = z / z.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    grad_shifted = loss_gradient(model, x + h * z, y)
    return (grad_shifted - grad).flatten(1).pow(2).sum(1).mean() / h**2


def perturbed_input(objective: AttributionStability, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    torch.manual_seed(1)  # the random mode's draw
    return objective._perturbed_input(model, x, y, objective.attack, None)


def loss_and_gradients(model: nn.Module, loss: Callable[[], Tensor]) -> tuple[Tensor, list[Tensor]]:
    model.zero_grad()
    value = loss()
    value.backward()
    # alone, the label logit's gradient leaves the last bias unused (None): compare it as zero
    return value.detach(), [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()]


def assert_same(model: nn.Module, fast: Callable[[], Tensor], plain: Callable[[], Tensor]) -> None:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fast_value, fast_grads = loss_and_gradients(model, fast)
    fast_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    plain_value, plain_grads = loss_and_gradients(model, plain)
    assert fast_value.item() > 1e-6  # a penalty that vanished would make the comparison empty
    torch.testing.assert_close(fast_value, plain_value, rtol=1e-9, atol=1e-12)
    for fast_grad, plain_grad in zip(fast_grads, plain_grads):
        torch.testing.assert_close(fast_grad, plain_grad, rtol=1e-8, atol=1e-11)
    for key, value in model.state_dict().items():  # BatchNorm running statistics too
        torch.testing.assert_close(fast_state[key], value, rtol=1e-9, atol=1e-12)


@pytest.fixture(params=[False, True], ids=["separate", "batched"])
def batched_forward(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run the test with clean and perturbed batches in one forward on the CPU too (the path
    CUDA takes), and without."""
    devices = {"cuda", "cpu"} if request.param else {"cuda"}
    monkeypatch.setattr(gradient_pairs, "BATCHED_FORWARD_DEVICES", devices)
    return request.param


@pytest.mark.usefixtures("single_thread", "batched_forward")
@pytest.mark.parametrize("perturbation", PERTURBATIONS)
@pytest.mark.parametrize("composition", ["alone", "after_erm", "before_erm"])
@pytest.mark.parametrize("activation", ["relu", "softplus"])
def test_attribution_stability_equals_the_plain_formula(
    perturbation: str, composition: str, activation: str
) -> None:
    model, (x, y) = model_of(activation), batch()
    stability = AttributionStability(perturbation=perturbation, attack=ATTACK)  # type: ignore[arg-type]
    x_perturbed = perturbed_input(stability, model, x, y)
    parts = {"alone": [stability], "after_erm": [ERM(), stability], "before_erm": [stability, ERM()]}[composition]
    objective: Objective = WeightedSum(  # λ is the stability part's weight
        [Part(p, weight=LAMBDA if p is stability else 1.0, name=f"p{i}") for i, p in enumerate(parts)]
    )
    with_erm = composition != "alone"

    def fast() -> Tensor:
        torch.manual_seed(1)
        return objective(model, x, y).loss

    def plain() -> Tensor:
        ce = F.cross_entropy(model(x), y) if with_erm else 0.0
        return ce + LAMBDA * plain_stability(model, x, y, x_perturbed)

    assert_same(model, fast, plain)


@pytest.mark.usefixtures("single_thread")
def test_attribution_stability_after_pgd_at_uses_its_example_and_equals_the_plain_formula() -> None:
    model, (x, y) = model_of(), batch()
    stability = AttributionStability(perturbation="ce_adversarial", attack=ATTACK)
    objective = WeightedSum([Part(PGDAdversarialTraining(ATTACK)), Part(stability, LAMBDA)])

    def plain() -> Tensor:
        x_adv = adversarial_example(ATTACK, model, x, y, None)
        return F.cross_entropy(model(x_adv), y) + LAMBDA * plain_stability(model, x, y, x_adv)

    assert_same(model, lambda: objective(model, x, y).loss, plain)


@pytest.mark.usefixtures("single_thread", "batched_forward")
@pytest.mark.parametrize("perturbation", ["random", "adversarial"])
def test_batchnorm_in_train_mode_keeps_separate_forwards(perturbation: str) -> None:
    """Batch statistics and the running-statistics update stay those of two separate batches."""
    model, (x, y) = model_of(batch_norm=True), batch()
    assert mixes_examples(model) and not mixes_examples(model.eval())
    model.train()
    stability = AttributionStability(perturbation=perturbation, attack=ATTACK)  # type: ignore[arg-type]
    model_state = {k: v.clone() for k, v in model.state_dict().items()}
    x_perturbed = perturbed_input(stability, model, x, y)
    model.load_state_dict(model_state)  # the search's forwards moved the running statistics

    def fast() -> Tensor:
        torch.manual_seed(1)
        context = StepContext()
        stability.perturbed_input(model, x, y, stability.attack, context)
        model.load_state_dict(model_state)
        return stability(model, x, y, context).loss

    assert_same(model, fast, lambda: plain_stability(model, x, y, x_perturbed))


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("composition", ["alone", "after_erm", "with_input_gradient"])
def test_curvature_equals_the_plain_formula(composition: str) -> None:
    model, (x, y) = model_of(), batch()
    curvature = CurvaturePenalty(finite_difference_step=0.5)
    gradient_penalty = InputGradientPenalty()
    parts = {
        "alone": [curvature],
        "after_erm": [ERM(), curvature],
        "with_input_gradient": [ERM(), gradient_penalty, curvature],
    }[composition]
    weights = {id(curvature): 2.0, id(gradient_penalty): 0.3}  # each regulariser's λ is its part's weight
    objective = WeightedSum([Part(p, weights.get(id(p), 1.0)) for p in parts])

    def plain() -> Tensor:
        total = 2.0 * plain_curvature(curvature, model, x, y)
        if composition != "alone":
            total = total + F.cross_entropy(model(x), y)
        if composition == "with_input_gradient":
            total = total + 0.3 * loss_gradient(model, x, y).flatten(1).pow(2).sum(1).mean()
        return total

    assert_same(model, lambda: objective(model, x, y).loss, plain)


class ForwardCounter:
    """Counts the examples a model's forwards see."""

    def __init__(self, model: nn.Module) -> None:
        self.batches: list[int] = []
        model.register_forward_hook(lambda module, args, out: self.batches.append(len(args[0])))


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("batched", [False, True], ids=["cpu_rule", "cuda_rule"])
def test_work_is_shared_within_a_step(batched: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gradient_pairs, "BATCHED_FORWARD_DEVICES", {"cuda", "cpu"} if batched else {"cuda"})
    model, (x, y) = model_of(), batch()
    counter = ForwardCounter(model)
    stability = AttributionStability(attack=ATTACK)
    WeightedSum([Part(stability), Part(ERM())])(model, x, y)
    # batched: clean and perturbed in one forward, and ERM reads the clean half
    assert counter.batches == ([2 * len(x)] if batched else [len(x), len(x)])
    counter.batches.clear()
    WeightedSum([Part(ERM()), Part(stability)])(model, x, y)
    assert counter.batches == [len(x), len(x)]  # ERM ran the clean forward first: only x' remains
    counter.batches.clear()
    context = StepContext()
    WeightedSum([Part(ERM()), Part(InputGradientPenalty()), Part(CurvaturePenalty())])(model, x, y, context)
    assert counter.batches == [len(x), len(x)]  # the clean forward, and x + h z
    assert context.computed.count(clean_gradient_key("loss")) == 1  # one clean gradient for two penalties
