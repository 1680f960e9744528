"""Input gradients at the clean batch and at a perturbed copy, taken together and shared.

The penalties that compare two input gradients (:class:`losses.AttributionStability`,
:class:`losses.CurvaturePenalty`) need ``g(x)`` and ``g(x')``, both with ``create_graph=True``.
This module takes them with as little repeated work as the batch allows:

- **The clean gradient is computed once per step** and kept in the :class:`StepContext` under
  ``(FORWARD_KEY, "clean", "<kind>_gradient")`` (a model output: a branch keeps its own), so two
  parts that need the same gradient of the same clean forward (an input-gradient penalty and the
  curvature penalty both differentiate the cross-entropy) differentiate once.
- **Each gradient is its own ``torch.autograd.grad`` call** unless the batches share a forward
  (then one call differentiates the sum of both scalars): differentiating the two disjoint
  graphs in one call, as CURE's code does, gives the same numbers and measured about 8 % slower
  on the CPU (``benchmarks/objectives_speed.md``).
- **Clean and perturbed inputs share one forward** (``model(cat([x, x']))``) on the device
  types of :data:`BATCHED_FORWARD_DEVICES` (CUDA: one launch per layer instead of two, fuller
  kernels at small batches; on the CPU, one thread, the doubled batch measured slower, see
  ``benchmarks/objectives_speed.md``) and only where it cannot change a number: the clean forward
  is not yet in the context (a part that ran before already paid for it), and no module mixes
  the examples of a batch. The rule for the latter:
  no BatchNorm (any ``torch.nn.modules.batchnorm._BatchNorm``, SyncBatchNorm included) in train
  mode, since its batch statistics and running-statistics update would change with the batch;
  in eval mode BatchNorm is per-example. The clean half's logits are put in the context under
  the clean forward's key, so an ERM part that runs later reads them instead of running the
  model again. Dropout draws its masks per element either way.

Plain PyTorch; eager mode (double backward).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from losses.base import FORWARD_KEY, StepContext, upcast
from losses.input_gradients import CLEAN_FORWARD_KEY, clean_forward, input_leaf

BATCHED_FORWARD_DEVICES: set[str] = {"cuda"}
"""Device types on which :func:`gradient_pair` runs the clean and perturbed batches as one forward."""

GradientKind = Literal["loss", "logit"]
"""``"loss"``: ∇ₓ CE(f(xᵢ), yᵢ) per example; ``"logit"``: ∇ₓ f_{yᵢ}(xᵢ), the saliency map."""


def mixes_examples(model: nn.Module) -> bool:
    """Whether a forward pass couples the examples of a batch: a BatchNorm in train mode."""
    return any(isinstance(module, _BatchNorm) and module.training for module in model.modules())


def gradient_objective(logits: Tensor, y: Tensor, kind: GradientKind) -> Tensor:
    """The scalar whose input gradient is the per-example gradient of ``kind`` (sums over examples:
    example i's term depends on xᵢ alone, so each row of the gradient is that example's own)."""
    if kind == "loss":
        return F.cross_entropy(upcast(logits), y, reduction="sum")
    return upcast(logits).gather(1, y[:, None]).sum()


def clean_gradient_key(kind: GradientKind) -> tuple[str, str, str]:
    """The context key of the clean batch's input gradient of ``kind`` (a model output)."""
    return (FORWARD_KEY, CLEAN_FORWARD_KEY, f"{kind}_gradient")


def _in_context(context: StepContext | None, key: tuple) -> bool:
    return context is not None and key in context.computed


def clean_gradient(
    model: nn.Module, x: Tensor, y: Tensor, kind: GradientKind, context: StepContext | None
) -> Tensor:
    """g(x) (B, C, H, W) with its graph, from the shared clean forward; once per step in a context."""

    def compute() -> Tensor:
        x_leaf, logits = clean_forward(model, x, context, needs_input_grad=True)
        (grad,) = torch.autograd.grad(gradient_objective(logits, y, kind), [x_leaf], create_graph=True)
        return grad

    return compute() if context is None else context.get(clean_gradient_key(kind), compute)


def gradient_pair(
    model: nn.Module,
    x: Tensor,
    x_perturbed: Tensor,
    y: Tensor,
    kind: GradientKind,
    context: StepContext | None,
    perturbed_forward: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """``(g(x), g(x'))``, each (B, C, H, W) and differentiable in the weights.

    Args:
        model: the classifier, in the mode the caller chose.
        x: (B, C, H, W) clean inputs.
        x_perturbed: (B, C, H, W) perturbed inputs (detached).
        y: (B,) labels.
        kind: which gradient (see :data:`GradientKind`).
        context: the step's context, or None for a stand-alone objective.
        perturbed_forward: ``(x_leaf, logits)`` at ``x_perturbed`` when another part computed that
            forward already (PGD-AT's at its adversarial example); then it is reused.

    Returns:
        The clean and the perturbed gradient. Values equal those of two separate forwards and
        two ``torch.autograd.grad`` calls (to floating-point reassociation when batched).
        The clean one is read from, or left in, the context.
    """
    batch = (
        perturbed_forward is None
        and x.device.type in BATCHED_FORWARD_DEVICES
        and not _in_context(context, (FORWARD_KEY, CLEAN_FORWARD_KEY))
        and not _in_context(context, clean_gradient_key(kind))
        and not mixes_examples(model)
    )
    if not batch:
        g_clean = clean_gradient(model, x, y, kind, context)
        if perturbed_forward is None:
            xp_leaf = input_leaf(x_perturbed)
            perturbed_forward = (xp_leaf, model(xp_leaf))
        xp_leaf, logits_p = perturbed_forward
        (g_perturbed,) = torch.autograd.grad(gradient_objective(logits_p, y, kind), [xp_leaf], create_graph=True)
        return g_clean, g_perturbed

    x_leaf, xp_leaf = input_leaf(x), input_leaf(x_perturbed)
    logits = model(torch.cat([x_leaf, xp_leaf]))  # (2B, K)
    logits_clean, logits_p = logits[: len(x)], logits[len(x) :]
    total = gradient_objective(logits_clean, y, kind) + gradient_objective(logits_p, y, kind)
    g_clean, g_perturbed = torch.autograd.grad(total, [x_leaf, xp_leaf], create_graph=True)
    if context is not None:  # a later ERM part reads the clean half, a later penalty the gradient
        context.get((FORWARD_KEY, CLEAN_FORWARD_KEY), lambda: (x_leaf, logits_clean))
        context.get(clean_gradient_key(kind), lambda: g_clean)
    return g_clean, g_perturbed
