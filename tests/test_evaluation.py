"""The evaluation core's robust accuracy: closed forms on a toy model and toy attacks, the
per-example worst case over attacks and over smaller radii, batching that changes nothing."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from attacks import PGD, AutoAttack, EvaluationAttack
from evaluation import RobustAccuracy, RobustCounts, check_attacks, robust_correctness


class Brightness(nn.Module):
    """Class 1 when the mean pixel exceeds 1/2, else class 0 (logits ± (mean − 1/2))."""

    def forward(self, x: Tensor) -> Tensor:
        m = x.flatten(1).mean(dim=1, keepdim=True) - 0.5
        return torch.cat([-m, m], dim=1)


class Darken(EvaluationAttack):
    """Moves every pixel down by ``reach`` × ε (an optimal L∞ attack on :class:`Brightness` for
    label 1 when reach = 1); with ``only_at`` it attacks at that radius alone (a non-monotone
    attack, as an unconverged one can be)."""

    norm = "linf"

    def __init__(self, eps: float = 0.1, reach: float = 1.0, only_at: float | None = None, label: str = "darken") -> None:
        self.eps, self.reach, self.only_at, self.label = eps, reach, only_at, label

    @property
    def name(self) -> str:
        return self.label

    def at_eps(self, eps: float) -> Darken:
        return Darken(eps, self.reach, self.only_at, self.label)

    def check_num_classes(self, num_classes: int) -> None:
        pass

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        if self.only_at is not None and abs(self.eps - self.only_at) > 1e-9:
            return x.clone()
        return (x - self.reach * self.eps).clamp(0.0, 1.0)


def _examples() -> tuple[Tensor, Tensor]:
    levels = torch.tensor([0.3, 0.52, 0.58, 0.62, 0.66, 0.74, 0.9, 0.45])
    x = levels.view(-1, 1, 1, 1).expand(-1, 1, 4, 4).clone()
    y = torch.ones(len(levels), dtype=torch.long)
    y[-1] = 0  # 0.45 is class 0: correct
    return x, y


def test_correctness_is_the_closed_form_and_the_worst_cases_combine_per_example() -> None:
    x, y = _examples()
    v = x[:, 0, 0, 0]
    eps = [0.0, 0.05, 0.1, 0.2]
    attacks = [Darken(reach=1.0, label="full"), Darken(reach=0.5, label="half"), Darken(only_at=0.1, label="spike")]
    result = robust_correctness(Brightness(), x, y, attacks, eps, batch_size=3)
    clean = torch.tensor([False, True, True, True, True, True, True, True])
    assert torch.equal(result.clean, clean)
    for e, radius in enumerate(eps):
        full = clean & ((v - radius > 0.5) | (y == 0))  # class 0 examples: darkening cannot hurt them
        half = clean & ((v - radius / 2 > 0.5) | (y == 0))
        spike = full if radius in (0.0, 0.1) else clean
        assert torch.equal(result.correct[0, e], full) and torch.equal(result.correct[1, e], half)
        assert torch.equal(result.correct[2, e], spike)
        assert torch.equal(result.worst[e], full & half & spike)
    # Up to each ε: the spike's successes at 0.1 count at 0.2 too (an example broken at 0.1 is
    # broken at 0.2), so the worst case never rises; here it equals the full attack's.
    assert torch.equal(result.worst_up_to_eps, result.correct[0])
    accuracy = RobustAccuracy.of(result)
    assert accuracy.clean == 7 / 8 and accuracy.by_attack["half"][1] == 6 / 8  # 0.52 falls at ε/2 = 0.025
    assert accuracy.worst == [7 / 8, 6 / 8, 5 / 8, 3 / 8] and accuracy.non_increasing


def test_a_clean_error_counts_as_an_error_at_every_radius_even_if_the_attack_would_fix_it() -> None:
    x, y = _examples()
    brighten = Darken(reach=-1.0, label="brighten")  # every pixel up by ε
    result = robust_correctness(Brightness(), x, 1 - y, [brighten], [0.0, 0.3], batch_size=8)
    assert result.clean[0] and not result.correct[0, 1, 0]  # 0.3, label 0: correct, broken at 0.3 + 0.3
    # 0.45 labelled 1 is wrong clean; brightening would make it "right": still an error.
    assert not result.clean[-1] and not result.correct[0, 1, -1]


def test_batching_and_counts_across_parts_change_nothing(trained_shapes) -> None:
    model, x, y = trained_shapes.model, trained_shapes.x[:20], trained_shapes.y[:20]
    attacks = [PGD(eps=0.1, step_size=0.025, steps=3, seed=0), PGD(eps=0.1, step_size=0.025, steps=3, seed=0, loss="dlr")]
    whole = robust_correctness(model, x, y, attacks, [0.0, 0.05, 0.1], batch_size=20)
    small = robust_correctness(model, x, y, attacks, [0.1, 0.05, 0.0], batch_size=3)  # any order of radii
    assert small.eps == whole.eps and torch.equal(small.correct, whole.correct)
    counts = RobustCounts(len(attacks), 3)
    counts.update(robust_correctness(model, x[:7], y[:7], attacks, [0.0, 0.05, 0.1]))
    counts.update(robust_correctness(model, x[7:], y[7:], attacks, [0.0, 0.05, 0.1]))
    assert torch.equal(counts.compute(), whole.counts()) and int(counts.total) == 20


@pytest.mark.parametrize(
    "attacks, eps, message",
    [
        ([], [0.1], "attacks must be a non-empty list"),
        ([PGD(seed=0), PGD(seed=1)], [0.1], "attacks must have distinct names"),
        ([PGD(seed=0), AutoAttack(norm="l2")], [0.1], "attacks must share one norm"),
        ([PGD()], [0.1], "attacks must hold attacks seeded per example"),
        (["pgd"], [0.1], "attacks must hold evaluation attacks"),
        ([PGD(seed=0)], [0.1, 1.5], r"eps must hold radii valid for norm='linf'"),
        ([PGD(seed=0)], [0.1, 0.1], "eps must hold distinct radii"),
        ([PGD(seed=0)], [], "eps must be a non-empty list"),
    ],
)
def test_bad_attack_lists_and_radii_name_the_argument(attacks: list, eps: list, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}"):
        check_attacks(attacks, eps)
