"""Threat models: the geometry of an attack, separate from the search that uses it.

A threat model says where an adversary may start (``random_init``), which way a gradient
step goes (``step``), and how to bring an iterate back into the allowed set (``project``):
the ε-ball around the clean input intersected with the valid image box [0, 1]. Splitting
geometry from search follows MadryLab's ``robustness/attack_steps.py``; PGD, FGSM-RS and the
attacks on explanations all reuse these objects.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import torch
from torch import Tensor

Norm = Literal["linf", "l2"]
NORMS: tuple[str, ...] = ("linf", "l2")


def _flat_norm(t: Tensor, p: float) -> Tensor:
    """Per-example p-norm of a batch, shaped (B, 1, ..., 1) so it broadcasts back."""
    # t: (B, *dims) -> (B, 1, ..., 1)
    norms = t.flatten(1).norm(p=p, dim=1)
    return norms.view(-1, *([1] * (t.dim() - 1)))


class ThreatModel(ABC):
    """An ε-ball under some norm, intersected with the image box [0, 1]."""

    norm: str

    def __init__(self, eps: float) -> None:
        self.eps = float(eps)

    @abstractmethod
    def random_init(self, x: Tensor, generator: torch.Generator | None = None, clip: bool = True) -> Tensor:
        """A random point of the ball around ``x``, projected into [0, 1] unless ``clip`` is False
        (Wong et al.'s MNIST code takes the first gradient at the unclipped start).

        ``generator`` makes the draw reproducible without touching the global RNG streams.
        """

    @abstractmethod
    def step(self, grad: Tensor, step_size: float) -> Tensor:
        """The ascent displacement for a gradient ``grad`` of the attack loss."""

    @abstractmethod
    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """The point of (ε-ball around ``x``) ∩ [0, 1] that ``x_adv`` is brought back to."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps:g})"


class LinfThreat(ThreatModel):
    """‖δ‖∞ ≤ ε: every pixel may move by at most ε (Madry et al., ICLR 2018)."""

    norm = "linf"

    def random_init(self, x: Tensor, generator: torch.Generator | None = None, clip: bool = True) -> Tensor:
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        start = x + (2.0 * u - 1.0) * self.eps
        return start.clamp_(0.0, 1.0) if clip else start

    def step(self, grad: Tensor, step_size: float) -> Tensor:
        # Steepest ascent under L∞ is the sign of the gradient.
        return step_size * grad.sign()

    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:
        return torch.min(torch.max(x_adv, x - self.eps), x + self.eps).clamp_(0.0, 1.0)


class L2Threat(ThreatModel):
    """‖δ‖₂ ≤ ε over the whole image."""

    norm = "l2"

    def random_init(self, x: Tensor, generator: torch.Generator | None = None, clip: bool = True) -> Tensor:
        # Uniform in the ball: a Gaussian direction, radius ε·u^(1/d).
        direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        direction = direction / _flat_norm(direction, 2).clamp_min(1e-12)
        d = x[0].numel()
        u = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
        radius = self.eps * u ** (1.0 / d)
        delta = direction * radius.view(-1, *([1] * (x.dim() - 1)))
        start = x + delta
        return start.clamp_(0.0, 1.0) if clip else start

    def step(self, grad: Tensor, step_size: float) -> Tensor:
        # Steepest ascent under L2 is the normalised gradient.
        return step_size * grad / _flat_norm(grad, 2).clamp_min(1e-12)

    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:
        delta = x_adv - x
        scale = (self.eps / _flat_norm(delta, 2).clamp_min(1e-12)).clamp(max=1.0)
        # Clamping to [0, 1] after the ball projection only shrinks each coordinate of δ
        # towards 0 (x itself lies in [0, 1]), so the result stays inside the ball.
        return (x + delta * scale).clamp_(0.0, 1.0)


def make_threat_model(norm: str, eps: float) -> ThreatModel:
    """The threat model named ``norm`` ("linf" or "l2") with radius ``eps``.

    Raises:
        ValueError: naming ``norm`` or ``eps`` when either is out of range: ε must lie in
            [0, 1] under L∞ (pixels live in [0, 1]) and be ≥ 0 under L2.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    eps = float(eps)
    if not eps >= 0.0:  # also catches NaN
        raise ValueError(f"eps must be >= 0, got {eps}")
    if norm == "linf":
        if eps > 1.0:
            raise ValueError(f"eps must be in [0, 1] for norm='linf' (pixels lie in [0, 1]), got {eps}")
        return LinfThreat(eps)
    return L2Threat(eps)
