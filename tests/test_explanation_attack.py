"""Ghorbani et al.'s top-k attack on explanations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attacks import TopKExplanationAttack, default_topk
from attributions import Saliency, pixel_map
from metrics.functional import perturb, topk_intersection
from tests.trained_model import TrainedShapes


def test_default_topk_scales_with_the_pixel_count() -> None:
    assert default_topk(28, 28) == 100
    assert default_topk(32, 32) == 131
    assert default_topk(16, 16) == 33


def test_topk_attack_beats_uniform_noise_and_keeps_the_label(trained_shapes: TrainedShapes) -> None:
    model, x = trained_shapes.model, trained_shapes.x[:32]
    method, eps = Saliency(), 0.1
    k = default_topk(16, 16)
    with torch.no_grad():
        label = model(x).argmax(1)
    clean = pixel_map(method(model, x, label))
    result = TopKExplanationAttack(eps=eps, step_size=0.01, steps=30).attack(model, x, method)
    noisy = perturb(model, x, label, method, "noise", eps=eps)

    attacked_inter = topk_intersection(clean, pixel_map(method(model, result.x_adv, label)), k)
    noise_inter = topk_intersection(clean, pixel_map(method(model, noisy, label)), k)
    # Far lower than noise of the same budget: at least twice the drop.
    assert (1 - attacked_inter.mean()) > 2 * (1 - noise_inter.mean()), (attacked_inter.mean(), noise_inter.mean())
    torch.testing.assert_close(result.topk_intersection, attacked_inter)  # the kept iterate's value
    with torch.no_grad():
        assert torch.equal(model(result.x_adv).argmax(1), label)
    assert torch.equal(result.label, label)
    assert (result.x_adv - x).abs().max() <= eps + 1e-6
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1


def test_topk_attack_with_no_steps_returns_the_input(trained_shapes: TrainedShapes) -> None:
    x = trained_shapes.x[:4]
    result = TopKExplanationAttack(steps=0).attack(trained_shapes.model, x, Saliency())
    assert torch.equal(result.x_adv, x)
    assert torch.equal(result.topk_intersection, torch.ones(4))
    assert torch.equal(result.steps_taken, torch.zeros(4, dtype=torch.long))


def test_topk_attack_leaves_the_model_as_found(trained_shapes: TrainedShapes) -> None:
    model = trained_shapes.model
    relus = [name for name, m in model.named_modules() if isinstance(m, nn.ReLU)]
    model.train()
    first = next(model.parameters())
    first.grad = torch.ones_like(first)
    x = trained_shapes.x[:4].clone()
    try:
        TopKExplanationAttack(steps=3).attack(model, x, Saliency())
        assert model.training and all(m.training for m in model.modules())
        assert [name for name, m in model.named_modules() if isinstance(m, nn.ReLU)] == relus
        assert torch.equal(first.grad, torch.ones_like(first))
        assert all(p.grad is None for p in list(model.parameters())[1:])
        assert not x.requires_grad
    finally:
        model.eval()
        first.grad = None


def test_topk_attack_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="eps must be"):
        TopKExplanationAttack(eps=2.0)
    with pytest.raises(ValueError, match="step_size must be"):
        TopKExplanationAttack(step_size=0)
    with pytest.raises(ValueError, match="k must be"):
        TopKExplanationAttack(k=0)
    with pytest.raises(ValueError, match="norm must be one of"):
        TopKExplanationAttack(norm="l1")  # type: ignore[arg-type]
