"""What an attack must offer to be evaluated at several radii (robust accuracy curves).

An evaluation attack maps (model, x, y) to adversarial inputs inside an ε-ball around x and
[0, 1]. The evaluation core (:mod:`evaluation.robust_accuracy`) runs one attack at every radius
of a grid, names its results by the attack's ``name``, and checks before any work that it can
run on the model's number of classes. :class:`attacks.PGD` and :class:`attacks.AutoAttack` are
evaluation attacks; a new one subclasses this and is then usable from YAML by ``class_path``
wherever an evaluation takes a list of attacks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TypeVar

from torch import Tensor, nn

Self = TypeVar("Self", bound="EvaluationAttack")


class EvaluationAttack(ABC):
    """An attack with a radius ``eps`` under a norm ``norm`` ("linf" or "l2")."""

    eps: float
    norm: str

    @property
    @abstractmethod
    def name(self) -> str:
        """A short name for logged keys and tables (``pgd10-ce``, ``autoattack``)."""

    @abstractmethod
    def at_eps(self: Self, eps: float) -> Self:
        """A copy of the attack at radius ``eps`` (a ValueError naming ``eps`` when out of range)."""

    @abstractmethod
    def check_num_classes(self, num_classes: int) -> None:
        """Raise a ValueError when the attack cannot run on a ``num_classes``-class model."""

    @abstractmethod
    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """(B, C, H, W) adversarial inputs for labels ``y``, detached, in the ball and [0, 1]."""
