"""Seeded searches start each example from its own draw, whatever batch it sits in."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attacks import PGD
from losses.input_gradients import maximise_in_ball
from tests.tiny import tiny_cnn


def test_pgd_initial_point_is_where_a_seeded_pgd_starts() -> None:
    x = torch.rand(5, 1, 16, 16)
    attack = PGD(eps=0.1, steps=0, seed=4)
    start = attack.initial_point(x)
    torch.testing.assert_close(start, attack(tiny_cnn(), x, torch.zeros(5, dtype=torch.long)))
    assert (start - x).abs().max() <= 0.1 + 1e-6 and not torch.equal(start, x)
    torch.testing.assert_close(PGD(eps=0.1, random_start=False).initial_point(x), x)


def test_maximise_in_ball_is_seeded_per_example() -> None:
    model = tiny_cnn().eval()
    x, y = torch.rand(6, 1, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2])
    attack = PGD(eps=0.1, step_size=0.02, steps=2, seed=9)

    def run(rows: torch.Tensor) -> torch.Tensor:
        labels = y[rows]
        return maximise_in_ball(attack, model, x[rows], lambda x_adv: F.cross_entropy(model(x_adv), labels, reduction="none"))

    whole = run(torch.arange(6))
    order = torch.tensor([5, 2, 0, 4, 1, 3])
    torch.testing.assert_close(run(order), whole[order])
    torch.testing.assert_close(run(torch.tensor([3])), whole[3:4])
    # A different seed draws different starts; the same seed the same.
    other = PGD(eps=0.1, step_size=0.02, steps=0, seed=10).initial_point(x)
    assert not torch.allclose(other, PGD(eps=0.1, step_size=0.02, steps=0, seed=9).initial_point(x))
