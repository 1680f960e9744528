"""Guided backpropagation (Springenberg, Dosovitskiy, Brox & Riedmiller, "Striving for
Simplicity: The All Convolutional Net", ICLR workshop 2015).

The gradient of the target logit with respect to the input, except that every ReLU passes
back only positive gradients, and only where its input was positive:

    R_in = 1[z > 0] · max(R_out, 0)

While explaining, every ``nn.ReLU`` module of the model is replaced by a guided one and put
back afterwards (like :func:`common.activations.softplus_relus`); ReLUs called as ``F.relu`` inside
``forward`` are not reached, so such a model gets plain gradients there. Adebayo et al. (2018)
show that guided backpropagation barely depends on the upper layers' weights: a useful case for
the randomisation sanity check.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from attributions.base import GradientAttribution


class _GuidedReLUFunction(torch.autograd.Function):
    """ReLU forward; backward keeps positive gradients where the output is positive."""

    @staticmethod
    def forward(ctx: Any, z: Tensor) -> Tensor:
        out = z.clamp(min=0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        # Written with differentiable ops so that create_graph=True can differentiate through it.
        return grad_out.clamp(min=0) * (out > 0).to(grad_out.dtype)


class GuidedReLU(nn.Module):
    """A ReLU whose backward pass is the guided-backpropagation rule."""

    def forward(self, z: Tensor) -> Tensor:
        return _GuidedReLUFunction.apply(z)


@contextmanager
def guided_relus(model: nn.Module) -> Iterator[nn.Module]:
    """Within the body, every ``nn.ReLU`` of ``model`` backpropagates by the guided rule."""
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU):
                swapped.append((parent, name, child))
                setattr(parent, name, GuidedReLU())
    try:
        yield model
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)


class GuidedBackprop(GradientAttribution, name="guided_backprop"):
    """Guided backpropagation of the target logit to the input.

    Args:
        create_graph: keep the graph (training through the explanation, attacking it).
        model_mode: "eval", "train" or None (leave the model as it is).
    """

    def attribute(self, model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
        x = self._input(inputs)
        with guided_relus(model):
            return self.input_gradient(model, x, target)
