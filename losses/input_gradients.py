"""Input gradients that training losses can differentiate again, and the forwards they share.

The attribution regularisers penalise functions of ∇ₓ (its norm, its direction, its change
along a direction), so the gradient must stay a differentiable function of the weights:
``torch.autograd.grad(..., create_graph=True)``, taken out of place and folded into the one
loss that the LightningModule back-propagates once. ``loss.backward(create_graph=True)`` is
never used: it fills ``.grad`` with graphs, leaks memory and breaks under DDP.

Gradients are taken with respect to a fresh leaf ``x.detach().requires_grad_(True)``, so the
caller's tensor keeps its ``requires_grad`` and the weights' ``.grad`` are not touched.

``torch.compile`` does not support double backward: these functions must run eagerly.
Under ``16-mixed`` precision an unscaled float16 input gradient can underflow to zero (PyTorch's
AMP notes: gradient penalties need the scaled-loss recipe); the second-order objectives refuse
float16 autocast with :func:`refuse_float16_autocast` and work under ``bf16-mixed``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks import PGD, projected_ascent
from common.modes import module_mode
from losses.base import FORWARD_KEY, StepContext, attack_key, upcast

CLEAN_FORWARD_KEY = "clean"


def input_leaf(x: Tensor) -> Tensor:
    """A new leaf with ``x``'s values that requires grad; ``x`` itself is left as it is."""
    if x.is_inference():
        x = x.clone()
    return x.detach().requires_grad_(True)


def shared_forward(
    model: nn.Module, x: Tensor, context: StepContext | None, key: Hashable, needs_input_grad: bool
) -> tuple[Tensor, Tensor]:
    """``(x_leaf, logits)`` of a batch, computed once per step under ``key`` when a context is shared.

    Within a :class:`StepContext` the forward is always taken on a leaf that requires grad, so
    that a later part can differentiate the same logits with respect to the input instead of
    running the model again (an input-gradient penalty after ERM's cross-entropy; attribution
    stability at PGD-AT's adversarial example). The cost is the input's gradient in the final
    backward, one transposed convolution. Key the forward by what determines ``x``: the clean
    batch, or the attack that produced it.

    Args:
        model: the classifier, in whatever mode the caller chose (the same for every sharer).
        x: (B, C, H, W) inputs in [0, 1].
        context: the step's context, or None for a stand-alone objective.
        key: what the forward is memoised under.
        needs_input_grad: whether the caller will differentiate with respect to ``x``.

    Returns:
        x_leaf: (B, C, H, W), the tensor the logits were computed from (``x`` itself when no
            input gradient is needed and there is no context).
        logits: (B, K).
    """
    if context is None:
        if not needs_input_grad:
            return x, model(x)
        x_leaf = input_leaf(x)
        return x_leaf, model(x_leaf)

    def forward() -> tuple[Tensor, Tensor]:
        x_leaf = input_leaf(x)
        return x_leaf, model(x_leaf)

    return context.get((FORWARD_KEY, key), forward)


def clean_forward(
    model: nn.Module, x: Tensor, context: StepContext | None, needs_input_grad: bool
) -> tuple[Tensor, Tensor]:
    """:func:`shared_forward` of the clean batch: ERM's logits and the penalties' gradients."""
    return shared_forward(model, x, context, CLEAN_FORWARD_KEY, needs_input_grad)


def adversarial_forward(
    model: nn.Module, x_adv: Tensor, attack: PGD, context: StepContext | None, needs_input_grad: bool
) -> tuple[Tensor, Tensor]:
    """:func:`shared_forward` of the example ``attack`` produced (memoised as the example is,
    :func:`losses.base.attack_key`)."""
    return shared_forward(model, x_adv, context, ("adversarial", attack_key(attack)), needs_input_grad)


def per_example_loss_gradient(x_leaf: Tensor, logits: Tensor, y: Tensor, create_graph: bool) -> Tensor:
    """∇ₓ CE(f(xᵢ), yᵢ) for every example, (B, C, H, W).

    The per-example losses are summed before differentiating: example i's loss depends only on
    xᵢ, so the gradient of the sum with respect to xᵢ is the gradient of its own loss (not
    1/B of it, as the gradient of the batch mean would be). BatchNorm in train mode couples the
    examples of a batch; then each row also carries the other examples' terms.
    """
    loss = F.cross_entropy(upcast(logits), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, [x_leaf], create_graph=create_graph)
    return grad


def per_example_logit_gradient(x_leaf: Tensor, logits: Tensor, y: Tensor, create_graph: bool) -> Tensor:
    """∇ₓ f_{yᵢ}(xᵢ), the gradient of each example's label logit (the saliency map), (B, C, H, W)."""
    label_logits = upcast(logits).gather(1, y[:, None]).sum()
    (grad,) = torch.autograd.grad(label_logits, [x_leaf], create_graph=create_graph)
    return grad


def flat_cosine(a: Tensor, b: Tensor, eps: float = 1e-12) -> Tensor:
    """Cosine similarity of each pair of rows of ``a`` and ``b`` flattened, (B,).

    The norms are clamped at ``eps`` so a zero gradient gives a cosine of 0, not NaN.
    """
    a, b = upcast(a.flatten(1)), upcast(b.flatten(1))  # (B, D)
    dot = (a * b).sum(1)
    return dot / (a.norm(dim=1).clamp_min(eps) * b.norm(dim=1).clamp_min(eps))


def refuse_float16_autocast(x: Tensor, objective: str) -> None:
    """Raise if float16 autocast is on: a second-order penalty would need the scaled-loss recipe.

    Under ``16-mixed`` the input gradient of the unscaled loss is computed in float16 and its
    small entries underflow to zero, so a gradient penalty silently vanishes. PyTorch's AMP
    notes give the remedy (differentiate the scaled loss, unscale, then penalise), which needs
    the GradScaler that Lightning's precision plugin holds and objectives cannot see; rather
    than train on a wrong penalty, the objective stops. ``bf16-mixed`` has float32's range and
    works.
    """
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) == torch.float16:
        raise RuntimeError(
            f"{objective} does not support float16 autocast (precision 16-mixed): its input-gradient "
            "penalty would underflow without the scaled-loss recipe. Use precision bf16-mixed or 32."
        )


def maximise_in_ball(
    attack: PGD,
    model: nn.Module,
    x: Tensor,
    objective: Callable[[Tensor], Tensor],
) -> Tensor:
    """Projected ascent of ``objective(x')`` (B,) over the attack's threat model.

    :class:`attacks.PGD` maximises a function of the logits; attacks on an explanation maximise
    a function of an input gradient at x' (a cosine distance, an integrated-gradients norm),
    which needs the gradient of a gradient. This runs the same search, with the attack's
    threat model, step size, number of steps, random start (:meth:`attacks.PGD.initial_point`:
    seeded per example from its pixels when the attack has a seed, so an example starts at the
    same point in any batch position) and model mode; ``objective`` builds any inner graph it
    needs (``create_graph=True``). Restarts are not used. The loop is
    :func:`attacks.ascent.projected_ascent`, as PGD's.

    Returns:
        (B, C, H, W) detached points of the ε-ball around ``x`` intersected with [0, 1].
    """
    x = x.detach()
    if attack.eps == 0.0:
        return x.clone()
    with module_mode(model, attack.model_mode):
        # A ReLU network's input gradient is piecewise constant, so its derivative can be zero or
        # disconnected (allow_unused); a zero step then leaves x' at its (random) start.
        return projected_ascent(
            lambda x_t, rows: objective(x_t),  # (B,)
            x,
            attack.initial_point(x),
            attack.threat,
            attack.step_size,
            attack.steps,
            allow_unused=True,
        )
