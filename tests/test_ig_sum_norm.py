"""IG-SUM-NORM and the coarse Riemann sum of IG-NORM's search (Chen et al., NeurIPS 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attacks import PGD
from losses import IGNorm, IGSumNorm, PGDAdversarialTraining, integrated_gradients_of_loss
from tests.tiny import shapes_batch, tiny_cnn

EPS = 0.1


def seeded(random_start: bool = True) -> PGD:
    return PGD(eps=EPS, step_size=0.03, steps=3, random_start=random_start, seed=7)


def test_beta_zero_is_pgd_adversarial_training() -> None:
    """Without the IG term the search and the loss are PGD-AT's on the cross-entropy."""
    model, (x, y) = tiny_cnn(), shapes_batch(8)
    attack = seeded(random_start=False)  # the same start; PGD's seeded starts are drawn per example
    ours = IGSumNorm(beta=0.0, riemann_steps=3, attack=attack)(model, x, y)
    pgd = PGDAdversarialTraining(attack)(model, x, y)
    torch.testing.assert_close(ours.loss, pgd.loss)
    torch.testing.assert_close(ours.logits, pgd.logits)


def test_loss_is_cross_entropy_plus_beta_ig_norm_at_the_end_point() -> None:
    model, (x, y) = tiny_cnn(), shapes_batch(8)
    objective = IGSumNorm(beta=0.5, riemann_steps=6, attack_riemann_steps=2, attack=seeded())
    out = objective(model, x, y)
    x_end = objective.worst_endpoint(model, x, y, objective.attack)  # seeded: the same point
    assert (x_end - x).abs().max() <= EPS + 1e-6 and x_end.min() >= 0 and x_end.max() <= 1
    ce = F.cross_entropy(model(x_end), y)
    ig_l1 = integrated_gradients_of_loss(model, x, x_end, y, steps=6).flatten(1).abs().sum(1).mean()
    torch.testing.assert_close(out.loss, ce + 0.5 * ig_l1)
    torch.testing.assert_close(out.logs["ig_l1"], ig_l1.detach())
    torch.testing.assert_close(out.logs["ce_adv"], ce.detach())
    assert out.loss.requires_grad


def test_searches_use_the_coarse_riemann_sum() -> None:
    """With m' points in the search and m in the penalty, the end point is the one an objective
    with m' points everywhere finds."""
    model, (x, y) = tiny_cnn(), shapes_batch(6)
    for cls, weight in ((IGSumNorm, {"beta": 1.0}), (IGNorm, {})):
        coarse_search = cls(**weight, riemann_steps=8, attack_riemann_steps=2, attack=seeded())
        coarse_everywhere = cls(**weight, riemann_steps=2, attack=seeded())
        torch.testing.assert_close(
            coarse_search.worst_endpoint(model, x, y, coarse_search.attack),
            coarse_everywhere.worst_endpoint(model, x, y, coarse_everywhere.attack),
        )
        assert coarse_search.riemann_steps == 8 and IGSumNorm().attack_riemann_steps == 50
