"""Closed forms of the objectives on linear (multinomial logistic) models, and the KL term.

On f(x) = W vec(x) + b, with p = softmax(f(x)): ∇ₓ CE(f(x), y) = Wᵀ(p − onehot(y)) and
∇ₓ f_y(x) = W_y, the y-th row, whatever x.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import entropy
from torch import Tensor, nn

from attacks import PGD
from losses import (
    ERM,
    TRADES,
    AttributionStability,
    CurvaturePenalty,
    InputGradientPenalty,
    Part,
    WeightedSum,
    integrated_gradients_of_loss,
    kl_divergence,
)
from tests.tiny import smooth_mlp

NUM_CLASSES = 3


def linear_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, NUM_CLASSES)).double()


def batch(n: int = 5, seed: int = 1) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 2, 3, generator=generator, dtype=torch.float64)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=generator)
    return x, y


def loss_gradient_closed_form(model: nn.Sequential, x: Tensor, y: Tensor) -> Tensor:
    """Wᵀ(p − onehot(y)) for every example, (B, 6)."""
    weight = model[1].weight  # (K, 6)
    with torch.no_grad():
        p = F.softmax(model(x), dim=1)  # (B, K)
    return (p - F.one_hot(y, NUM_CLASSES).double()) @ weight.detach()


def test_input_gradient_penalty_equals_its_closed_form() -> None:
    model, (x, y) = linear_model(), batch()
    penalty = loss_gradient_closed_form(model, x, y).pow(2).sum(1).mean()
    out = InputGradientPenalty()(model, x, y)
    torch.testing.assert_close(out.loss.detach(), penalty)
    assert out.logits is None
    weighted = WeightedSum([Part(InputGradientPenalty(), 2.5)])(model, x, y)  # λ = 2.5 as the part's weight
    torch.testing.assert_close(weighted.loss.detach(), 2.5 * penalty)


def test_input_gradient_penalty_is_per_example_so_lambda_ignores_batch_size() -> None:
    model, (x, y) = linear_model(), batch(6)
    penalty = InputGradientPenalty()
    whole = penalty(model, x, y).loss
    halves = (penalty(model, x[:3], y[:3]).loss + penalty(model, x[3:], y[3:]).loss) / 2
    torch.testing.assert_close(whole, halves)


def test_trades_with_beta_zero_is_erm() -> None:
    model, (x, y) = linear_model(), batch()
    torch.manual_seed(0)
    trades = TRADES(beta=0.0, attack=PGD(eps=0.1, step_size=0.05, steps=2))(model, x, y)
    erm = ERM()(model, x, y)
    torch.testing.assert_close(trades.loss, erm.loss)
    torch.testing.assert_close(trades.logits, erm.logits)


def test_trades_kl_is_zero_at_the_clean_point_and_positive_off_it() -> None:
    model, (x, y) = linear_model(), batch()
    at_x = TRADES(beta=6.0, attack=PGD(eps=0.0))(model, x, y)
    assert at_x.logs["kl"] == 0
    torch.testing.assert_close(at_x.loss, ERM()(model, x, y).loss)
    torch.manual_seed(0)
    off_x = TRADES(beta=6.0, attack=PGD(eps=0.3, step_size=0.1, steps=3))(model, x, y)
    assert off_x.logs["kl"] > 0
    torch.testing.assert_close(off_x.loss.detach(), off_x.logs["ce"] + 6.0 * off_x.logs["kl"])


def test_kl_divergence_matches_scipy_and_is_nonnegative() -> None:
    generator = torch.Generator().manual_seed(0)
    logits_p = 3 * torch.randn(20, 5, generator=generator, dtype=torch.float64)
    logits_q = 3 * torch.randn(20, 5, generator=generator, dtype=torch.float64)
    kl = kl_divergence(logits_p, logits_q)
    p, q = F.softmax(logits_p, 1).numpy(), F.softmax(logits_q, 1).numpy()
    expected = torch.tensor([entropy(p[i], q[i]) for i in range(20)])
    torch.testing.assert_close(kl.double(), expected, rtol=1e-5, atol=1e-6)
    assert (kl >= 0).all()
    assert kl_divergence(logits_p, logits_p).abs().max() < 1e-6


def test_attribution_stability_is_zero_for_a_linear_model() -> None:
    """g(x) = W_y does not depend on x, so cos(g(x), g(x')) = 1 for any x'."""
    model, (x, y) = linear_model(), batch()
    torch.manual_seed(0)
    out = AttributionStability(attack=PGD(eps=0.3))(model, x, y)
    assert out.loss.abs() < 1e-6
    assert out.logs["cosine"].item() == pytest.approx(1.0, abs=1e-9)


def test_curvature_penalty_equals_its_closed_form() -> None:
    model, (x, y) = linear_model(), batch()
    h, lam = 0.7, 3.0
    grad = loss_gradient_closed_form(model, x, y)  # (B, 6)
    z = grad.sign() / grad.sign().norm(dim=1, keepdim=True)
    grad_shifted = loss_gradient_closed_form(model, x + h * z.view_as(x), y)
    penalty = (grad_shifted - grad).pow(2).sum(1).mean() / h**2
    out = CurvaturePenalty(finite_difference_step=h)(model, x, y)
    torch.testing.assert_close(out.loss.detach(), penalty)
    weighted = WeightedSum([Part(ERM()), Part(CurvaturePenalty(finite_difference_step=h), lam)])(model, x, y)
    torch.testing.assert_close(weighted.loss.detach(), ERM()(model, x, y).loss.detach() + lam * penalty)


@pytest.mark.parametrize("model_factory", [linear_model, lambda: smooth_mlp(6)])
def test_integrated_gradients_are_complete(model_factory) -> None:
    """Σⱼ IGⱼ(x, x') = ℓ(x') − ℓ(x) up to the Riemann sum's O(1/m) error."""
    model, (x, y) = model_factory(), batch()
    x_end = (x + 0.3 * torch.randn_like(x)).clamp(0, 1)
    ig = integrated_gradients_of_loss(model, x, x_end, y, steps=400)
    with torch.no_grad():
        gap = F.cross_entropy(model(x_end), y, reduction="none") - F.cross_entropy(model(x), y, reduction="none")
    torch.testing.assert_close(ig.flatten(1).sum(1).detach(), gap, rtol=0, atol=5e-3)
