"""MART: closed forms on a 2-class linear model, the misclassification weight, the boosted CE."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attacks import PGD
from losses import MART, boosted_cross_entropy, mart_terms


def linear_two_class(seed: int = 0) -> nn.Module:
    """f(x) = W·flatten(x) + b with 2 classes, in float64; no weight difference is 0."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 2)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 1.5, -1.0, 0.3], [-0.5, 1.0, 2.0, -1.0, 0.8, -0.6]]))
        model[1].bias.copy_(torch.tensor([0.2, -0.1]))
    return model


def test_mart_loss_equals_a_hand_computation_on_a_linear_model() -> None:
    model = linear_two_class()
    x = torch.tensor([[0.3, 0.6, 0.4, 0.5, 0.7, 0.45], [0.55, 0.35, 0.6, 0.4, 0.3, 0.65], [0.5] * 6]).double()
    x = x.view(3, 1, 2, 3)
    y = torch.tensor([0, 1, 1])
    eps, beta = 0.1, 6.0
    # 4 steps of 0.05 from x + 0.001·N reach the corner of the ball the CE gradient points to.
    objective = MART(beta=beta, attack=PGD(eps=eps, step_size=0.05, steps=4))
    out = objective(model, x, y)

    # Hand computation. For 2 classes the CE gradient in x is p_other·(w_other − w_y): PGD ends
    # at x + ε·sign(w_other − w_y) (inside [0, 1] here).
    w, b = model[1].weight.detach(), model[1].bias.detach()
    other = 1 - y
    direction = torch.sign(w[other] - w[y]).view_as(x)
    x_adv = x + eps * direction

    def margin(inputs: torch.Tensor) -> torch.Tensor:  # f_y − f_other, (B,)
        flat = inputs.flatten(1)
        return (flat * (w[y] - w[other])).sum(1) + b[y] - b[other]

    p_y_clean, p_y_adv = torch.sigmoid(margin(x)), torch.sigmoid(margin(x_adv))
    bce = -torch.log(p_y_adv) - torch.log(1 - (1 - p_y_adv))  # the wrong class is the other one
    kl = p_y_clean * torch.log(p_y_clean / p_y_adv) + (1 - p_y_clean) * torch.log((1 - p_y_clean) / (1 - p_y_adv))
    expected = bce.mean() + beta * (kl * (1 - p_y_clean)).mean()

    torch.testing.assert_close(out.loss, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.logs["bce"], bce.mean(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.logs["kl_weight"], (1 - p_y_clean).mean(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.logits_adv.detach(), model(x_adv).detach(), rtol=1e-10, atol=1e-12)
    assert out.logits is out.logits_adv  # train/acc counts the adversarial examples, as for PGD-AT


def test_kl_weight_is_zero_for_examples_classified_with_confidence_one() -> None:
    model = linear_two_class()
    with torch.no_grad():  # a margin of ~1000 logits: softmax gives exactly 1 in float64
        model[1].weight.mul_(0.0)
        model[1].bias.copy_(torch.tensor([1000.0, 0.0]))
    x = torch.rand(4, 1, 2, 3, dtype=torch.float64)
    y = torch.zeros(4, dtype=torch.long)
    out = MART(beta=6.0, attack=PGD(eps=0.1, step_size=0.05, steps=2))(model, x, y)
    assert out.logs["kl_weight"] == 0.0 and out.logs["kl"] == 0.0
    assert out.loss == out.logs["bce"]

    # The weight silences the KL however large it is: clean logits certain, adversarial ones not.
    clean = torch.tensor([[900.0, 0.0], [0.0, 900.0]], dtype=torch.float64)
    adversarial = torch.tensor([[0.0, 3.0], [2.0, 0.0]], dtype=torch.float64)
    bce, kl, weight = mart_terms(clean, adversarial, torch.tensor([0, 1]))
    assert torch.all(kl > 1.0) and torch.equal(weight, torch.zeros(2, dtype=torch.float64))


def test_boosted_cross_entropy_pushes_away_from_the_most_likely_wrong_class() -> None:
    logits = torch.tensor([[2.0, 3.0, 1.0, 0.0], [4.0, 3.5, 1.0, -1.0]], dtype=torch.float64)
    y = torch.tensor([0, 0])
    p = F.softmax(logits, dim=1)
    # Example 0: class 1 is the top class and the wrong one; example 1: y is on top, class 1 second.
    expected = -torch.log(p[:, 0]) - torch.log(1 - p[:, 1])
    torch.testing.assert_close(boosted_cross_entropy(logits, y), expected, rtol=1e-12, atol=1e-12)


def test_boosted_cross_entropy_matches_the_authors_formula_away_from_certainty() -> None:
    """The authors' ``CE + NLL(log(1.0001 − p + 1e-12), top wrong)`` differs only by its offsets."""
    torch.manual_seed(0)
    logits = torch.randn(64, 10, dtype=torch.float64) * 2
    y = torch.randint(0, 10, (64,))
    probs = F.softmax(logits, dim=1)
    top2 = torch.argsort(probs, dim=1)[:, -2:]
    wrong = torch.where(top2[:, -1] == y, top2[:, -2], top2[:, -1])
    offset_log = torch.log(1.0001 - probs + 1e-12).gather(1, wrong[:, None]).squeeze(1)
    authors = F.cross_entropy(logits, y, reduction="none") - offset_log
    torch.testing.assert_close(boosted_cross_entropy(logits, y), authors, rtol=1e-3, atol=0)


def test_mart_attack_is_cross_entropy_pgd_from_a_small_gaussian_start() -> None:
    """Its example is the CE maximiser (PGD-AT's direction), not TRADES' KL search."""
    model = linear_two_class()
    x = torch.full((2, 1, 2, 3), 0.5, dtype=torch.float64)
    y = torch.tensor([0, 1])
    attack = PGD(eps=0.1, step_size=0.05, steps=4)
    out = MART(attack=attack)(model, x, y)
    plain_pgd = attack(model, x, y)  # uniform start; 4 steps reach the same corner
    torch.testing.assert_close(out.logits_adv.detach(), model(plain_pgd).detach())


def test_mart_rejects_a_negative_beta() -> None:
    with pytest.raises(ValueError, match="^beta must be"):
        MART(beta=-1.0)
