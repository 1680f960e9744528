"""Robust accuracy under a list of attacks at several radii: the one algorithm behind every
robust-accuracy figure (``callbacks.RobustnessEvaluator`` and ``train.py report`` both call it).

For examples (x_i, y_i), attacks a = 1..A and radii ε_1 < … < ε_E, per example:

    correct[a, e, i]   = 1[f(x_i) = y_i] · 1[f(a_{ε_e}(x_i, y_i)) = y_i]
    worst[e, i]        = min_a correct[a, e, i]            the worst case over the attacks
    worst_up_to[e, i]  = min_{e' ≤ e} worst[e', i]         and over every smaller radius

and each accuracy is the mean over i. A clean error is an error at every ε (x itself lies in
every ball), as AutoAttack and RobustBench count it; at ε = 0 every row is the clean accuracy.
An adversarial example found at ε' lies in every larger ball too, so ``worst_up_to`` is the
tightest upper bound on the true robust accuracy at ε that the run found; where it is below
``worst``, the attacks at ε missed what a smaller budget found (not converged, or masked
gradients).

Each attack runs at every radius on every example classified correctly (so the per-attack
figures are each attack's own, side by side); the only example skipped is one already
misclassified clean, which cannot change a number. Attacks are templates with
``at_eps(ε)`` (:meth:`attacks.PGD.at_eps`, :meth:`attacks.AutoAttack.at_eps`); seeded per
example, their results do not depend on the batching or on how examples are split over
processes, and per-example rows make sums exact under DDP (:class:`RobustCounts`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from attacks import EvaluationAttack
from common.modes import module_mode


def check_attacks(attacks: Sequence[Any], eps: Sequence[float], argument: str = "attacks") -> list[EvaluationAttack]:
    """Check an attack list and a radius list before any work.

    Raises:
        ValueError: naming ``argument`` (an empty list, duplicate names, mixed norms, an attack
            that is not an evaluation attack, or one whose random start is not seeded) or
            ``eps`` (not a non-empty list of distinct radii valid for the attacks' norm).
    """
    if isinstance(attacks, (str, bytes)) or not isinstance(attacks, Sequence) or len(attacks) == 0:
        raise ValueError(f"{argument} must be a non-empty list of attacks (attacks.PGD, attacks.AutoAttack), got {attacks!r}")
    for i, attack in enumerate(attacks):
        if not isinstance(attack, EvaluationAttack):
            raise ValueError(f"{argument} must hold evaluation attacks (attacks.PGD, attacks.AutoAttack), got {argument}[{i}] = {attack!r}")
        if getattr(attack, "random_start", False) and getattr(attack, "seed", 0) is None:
            raise ValueError(
                f"{argument} must hold attacks seeded per example (seed: 0) or starting from x (random_start: false), "
                f"got {argument}[{i}] ({attack.name}) with an unseeded random start, which depends on the batch and the process"
            )
    names = [a.name for a in attacks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{argument} must have distinct names, got {duplicates} more than once")
    norms = sorted({a.norm for a in attacks})
    if len(norms) > 1:
        raise ValueError(f"{argument} must share one norm (one threat model per curve), got {norms}")
    check_radii(eps, norms[0])
    return list(attacks)


def check_radii(eps: Sequence[float], norm: str) -> list[float]:
    """``eps`` sorted, when it is a non-empty list of distinct radii ≥ 0 (≤ 1 under L∞).

    Raises:
        ValueError: naming ``eps``.
    """
    if isinstance(eps, (str, bytes)) or not isinstance(eps, Sequence) or len(eps) == 0:
        raise ValueError(f"eps must be a non-empty list of radii, got {eps!r}")
    for value in eps:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"eps must hold numbers >= 0, got {value!r}")
        if norm == "linf" and value > 1:
            raise ValueError(f"eps must hold radii valid for norm='linf': each in [0, 1] (pixels lie in [0, 1]), got {value}")
    if len({float(e) for e in eps}) != len(eps):
        raise ValueError(f"eps must hold distinct radii, got {list(eps)}")
    return sorted(float(e) for e in eps)


@dataclass
class RobustCorrectness:
    """Per-example correctness under each attack at each radius.

    Attributes:
        eps: the radii, ascending.
        attacks: the attacks' names, in the order given.
        clean: (N,) bool, classified correctly without attack.
        correct: (A, E, N) bool, classified correctly and not broken by attack a at radius e.
    """

    eps: list[float]
    attacks: list[str]
    clean: Tensor
    correct: Tensor

    @property
    def worst(self) -> Tensor:
        """(E, N) bool: correct under every attack at radius e."""
        return self.correct.all(dim=0)

    @property
    def worst_up_to_eps(self) -> Tensor:
        """(E, N) bool: correct under every attack at every radius ε' ≤ ε_e."""
        return self.worst.int().cummin(dim=0).values.bool()

    def counts(self) -> Tensor:
        """(A + 2, E) int64 counts of correct examples: one row per attack, then the worst case,
        then the worst case up to ε (sums: exact when added across processes)."""
        rows = torch.cat([self.correct, self.worst[None], self.worst_up_to_eps[None]])  # (A + 2, E, N)
        return rows.sum(dim=2).to(torch.int64)


@dataclass
class RobustAccuracy:
    """Accuracies over a set of examples (what a log or a report shows).

    Attributes:
        eps: the radii, ascending.
        examples: the number of examples.
        clean: clean accuracy.
        by_attack: ``{attack name: accuracy at each radius}``.
        worst: accuracy under every attack at each radius (the per-example worst case).
        worst_up_to_eps: accuracy under every attack at every radius ε' ≤ ε.
    """

    eps: list[float]
    examples: int
    clean: float
    by_attack: dict[str, list[float]]
    worst: list[float]
    worst_up_to_eps: list[float]

    @classmethod
    def from_counts(cls, eps: Sequence[float], attacks: Sequence[str], counts: Tensor, clean: int, total: int) -> RobustAccuracy:
        """From :meth:`RobustCorrectness.counts` (summed over processes), the clean count and N."""
        share = (counts.double() / max(total, 1)).tolist()
        return cls(
            eps=list(eps),
            examples=int(total),
            clean=float(clean) / max(total, 1),
            by_attack={name: share[a] for a, name in enumerate(attacks)},
            worst=share[len(attacks)],
            worst_up_to_eps=share[len(attacks) + 1],
        )

    @classmethod
    def of(cls, correctness: RobustCorrectness) -> RobustAccuracy:
        """The accuracies of per-example results gathered in one place."""
        n = int(correctness.clean.shape[0])
        return cls.from_counts(correctness.eps, correctness.attacks, correctness.counts(), int(correctness.clean.sum()), n)

    @property
    def non_increasing(self) -> bool:
        """Whether the worst-case accuracy never rises with ε (as the true robust accuracy)."""
        return all(b <= a for a, b in zip(self.worst, self.worst[1:]))


class RobustCounts(Metric):
    """Sum-reduced counts of :meth:`RobustCorrectness.counts`, for DDP (each example counted
    once, on the process that holds it)."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    counts: Tensor
    clean: Tensor
    total: Tensor

    def __init__(self, num_attacks: int, num_eps: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("counts", default=torch.zeros(num_attacks + 2, num_eps, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("clean", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, correctness: RobustCorrectness) -> None:  # type: ignore[override]
        self.counts += correctness.counts().to(self.counts.device)
        self.clean += int(correctness.clean.sum())
        self.total += int(correctness.clean.shape[0])

    def compute(self) -> Tensor:
        return self.counts


def robust_correctness(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attacks: Sequence[EvaluationAttack],
    eps: Sequence[float],
    batch_size: int = 128,
    progress: Callable[[str], None] | None = None,
) -> RobustCorrectness:
    """Per-example correctness of ``model`` on (x, y) under each attack at each radius.

    Args:
        model: the classifier, taking images in [0, 1] (predictions in eval mode; each attack
            sets its own mode and hands the model back as found).
        x: (N, C, H, W) examples in [0, 1], on the model's device.
        y: (N,) labels.
        attacks: attack templates (checked with :func:`check_attacks`); each is run at every
            radius through ``at_eps``.
        eps: radii (0 means no attack).
        batch_size: examples per attack call.
        progress: called after each attacked batch with a short description (a progress bar's
            update); ``len(attacks) × (radii > 0) × ⌈N / batch_size⌉`` calls in all.

    Returns:
        :class:`RobustCorrectness` on the CPU.
    """
    radii = sorted(float(e) for e in eps)
    names = [a.name for a in attacks]
    n = int(x.shape[0])
    clean = torch.zeros(n, dtype=torch.bool)
    correct = torch.zeros(len(attacks), len(radii), n, dtype=torch.bool)  # (A, E, N)
    scaled = {(a, e): attack.at_eps(radius) for a, attack in enumerate(attacks) for e, radius in enumerate(radii) if radius > 0}
    for lo in range(0, n, batch_size):
        hi = min(lo + batch_size, n)
        xb, yb = x[lo:hi], y[lo:hi]
        with torch.no_grad(), module_mode(model, "eval"):
            right = (model(xb).argmax(dim=1) == yb).cpu()  # (b,)
        clean[lo:hi] = right
        alive = right.nonzero().squeeze(1)  # clean errors stay errors at every ε
        for e, radius in enumerate(radii):
            for a, attack in enumerate(attacks):
                if radius == 0.0:
                    correct[a, e, lo:hi] = right
                    continue
                if alive.numel() > 0:
                    index = alive.to(xb.device)
                    x_adv = scaled[(a, e)](model, xb[index], yb[index])
                    with torch.no_grad(), module_mode(model, "eval"):
                        survived = (model(x_adv).argmax(dim=1) == yb[index]).cpu()
                    correct[a, e, lo + alive] = survived
                if progress is not None:
                    progress(f"{names[a]} ε={radius:.4g}")
    return RobustCorrectness(radii, names, clean, correct)
