"""FGSM with a random start (Wong, Rice & Kolter 2020)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attacks import FGSMRandomStart
from tests.tiny import shapes_batch, tiny_cnn


def test_default_step_is_five_quarters_of_eps() -> None:
    assert FGSMRandomStart(eps=8 / 255).step_size == pytest.approx(10 / 255)
    assert FGSMRandomStart(eps=0.3).step_size == pytest.approx(0.375)
    assert FGSMRandomStart(eps=0.3, step_size=0.1).step_size == pytest.approx(0.1)
    assert FGSMRandomStart(eps=0.1).steps == 1


def test_matches_a_direct_implementation_of_the_paper() -> None:
    """δ₀ ~ U(−ε, ε), x₀ = clip(x + δ₀), one step of α·sign(∇), clipped to the ball and [0, 1]."""
    model = tiny_cnn().eval()
    x, y = shapes_batch(8)
    eps, alpha = 0.1, 0.125
    torch.manual_seed(3)
    u = torch.rand(x.shape)
    x0 = (x + (2 * u - 1) * eps).clamp(0, 1).requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x0), y, reduction="sum"), [x0])
    expected = torch.min(torch.max(x0.detach() + alpha * grad.sign(), x - eps), x + eps).clamp(0, 1)

    torch.manual_seed(3)  # the training path: the start is drawn from the global RNG
    x_adv = FGSMRandomStart(eps=eps)(model, x, y)

    torch.testing.assert_close(x_adv, expected, rtol=0, atol=0)


def test_stays_in_ball_and_image_box_and_raises_the_loss() -> None:
    model = tiny_cnn()
    x, y = shapes_batch(32)
    torch.manual_seed(0)
    x_adv = FGSMRandomStart(eps=0.1)(model, x, y)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y)


def test_leaves_model_weights_and_input_as_found() -> None:
    model = tiny_cnn().train()
    x, y = shapes_batch(4)
    FGSMRandomStart(eps=0.1)(model, x, y)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert not x.requires_grad


def test_bad_eps_names_the_field() -> None:
    with pytest.raises(ValueError, match="^eps must be"):
        FGSMRandomStart(eps=-0.1)
