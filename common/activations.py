"""Swap a network's ReLUs for softplus(β), permanently or for a while.

ReLU networks have piecewise-constant input gradients, so the gradient of a gradient
explanation with respect to the input is zero almost everywhere. Dombrowski et al., "Explanations
can be manipulated and geometry is to blame" (NeurIPS 2019) replace ReLU with
softplus_β(z) = log(1 + e^{βz}) / β, which tends to ReLU as β → ∞ and makes explanations smooth
(and attackable, and regularisable). Only ``nn.ReLU`` modules are swapped: a network that calls
``F.relu`` inside ``forward`` is left as it is, which :func:`count_relus` lets a caller check.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


def count_relus(model: nn.Module) -> int:
    """Number of ``nn.ReLU`` modules in ``model``."""
    return sum(isinstance(m, nn.ReLU) for m in model.modules())


def _check_beta(beta: float) -> float:
    if not beta > 0:
        raise ValueError(f"softplus beta must be > 0, got {beta}")
    return float(beta)


def relu_to_softplus(model: nn.Module, beta: float) -> nn.Module:
    """Replace every ``nn.ReLU`` in ``model`` by ``nn.Softplus(beta)``, in place; returns ``model``."""
    beta = _check_beta(beta)
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.ReLU):
                setattr(parent, name, nn.Softplus(beta=beta))
    return model


@contextmanager
def softplus_relus(model: nn.Module, beta: float) -> Iterator[nn.Module]:
    """Within the body, every ``nn.ReLU`` of ``model`` computes softplus(β); restored on exit."""
    beta = _check_beta(beta)
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU):
                swapped.append((parent, name, child))
                setattr(parent, name, nn.Softplus(beta=beta))
    try:
        yield model
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
