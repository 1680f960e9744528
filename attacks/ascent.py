"""Projected ascent: the one search loop behind PGD, the in-ball maximisations and the top-k attack.

Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018. From a start x₀ in the threat model (a uniform point of the
ε-ball, or x itself), take T steps of

    x_{t+1} = Π_{B_ε(x) ∩ [0,1]^d} ( x_t + α · s(∇_x Σ_i J_i(x_t)) )

where J is a per-example objective (B,) to maximise, Σ_i J_i is differentiated once for the
batch (example i's objective depends only on x_i, so row i of the gradient is ∇J_i; BatchNorm in
train mode couples the rows), s is the step rule (``sign`` under L∞, g/‖g‖₂ under L2: the
threat model's steepest ascent; or ``raw`` g) and Π the threat model's projection
(:mod:`attacks.threat_models`). Gradients are taken with ``torch.autograd.grad`` with respect to
the iterate only, never ``.backward()``.

Where each user departs from the plain loop (all through hooks of :func:`projected_ascent`):

- :class:`attacks.PGD`: J is the attack loss of the logits (cross-entropy, margin, DLR, or a
  caller's, e.g. TRADES' KL). ``early_stop`` (Wong et al.'s training code) freezes an example
  for one step when the model misclassifies it at x_t: the objective returns a per-example
  ``moving`` mask alongside J. Restarts and the worst case over them stay in PGD.
- :func:`losses.input_gradients.maximise_in_ball`: J is a function of an input gradient
  (a cosine distance, an integrated-gradients norm), so its gradient is a second derivative;
  for a ReLU network it can be zero or disconnected, and ``allow_unused`` then reads a missing
  gradient as zero (the iterate stays where it is).
- :class:`attacks.TopKExplanationAttack` (Ghorbani et al., AAAI 2019): J is *minus* the
  attribution share inside the clean top-k set (the attack descends on the share; negation is
  exact in floating point, so ascending on −share is bit for bit the old descent), taken on the
  softplus network. After each step an ``after_step`` hook measures the new iterate on the real
  network, keeps the best label-preserving iterate per criterion, and (``stop_at_label_flip``)
  rejects the step of an example whose label changed: that example keeps its previous iterate
  and takes no further steps, and only the examples still stepping are computed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from attacks.threat_models import ThreatModel, _flat_norm

StepRule = Literal["sign", "l2", "raw"]
STEP_RULES: tuple[str, ...] = ("sign", "l2", "raw")

AscentObjective = Callable[[Tensor, "Tensor | None"], "Tensor | tuple[Tensor, Tensor]"]
"""``objective(x_t, rows) -> J`` (R,) or ``(J, moving)``: J the per-example value to maximise at
the iterates ``x_t`` (R, C, H, W), ``rows`` (R,) the batch indices of those examples (None: the
whole batch, in order), ``moving`` (R,) bool, False for an example that must not take this step."""

AfterStep = Callable[[int, "Tensor | None", Tensor], "Tensor | None"]
"""``after_step(t, rows, x_new) -> accepted``: called with step t's projected iterates ``x_new``
(R, C, H, W) of the examples ``rows`` (None: the whole batch); returns None (every step is taken)
or a bool mask (R,): an example whose step is not accepted keeps its previous iterate and stops."""


def step_displacement(rule: StepRule | None, threat: ThreatModel, grad: Tensor, step_size: float) -> Tensor:
    """α · s(g): the threat model's steepest-ascent step (``rule=None``), or ``sign``, ``l2``, ``raw``."""
    if rule is None:
        return threat.step(grad, step_size)
    if rule == "sign":
        return step_size * grad.sign()
    if rule == "l2":
        return step_size * grad / _flat_norm(grad, 2).clamp_min(1e-12)
    if rule == "raw":
        return step_size * grad
    raise ValueError(f"rule must be one of {STEP_RULES} or None, got {rule!r}")


def _gradient(value: Tensor, x_t: Tensor, allow_unused: bool) -> Tensor:
    """∇ of Σ value with respect to ``x_t``; zeros where it does not depend on it, if allowed."""
    if allow_unused and not value.requires_grad:
        return torch.zeros_like(x_t)
    (grad,) = torch.autograd.grad(value.sum(), [x_t], allow_unused=allow_unused, materialize_grads=allow_unused)
    return grad


def projected_ascent(
    objective: AscentObjective,
    x: Tensor,
    start: Tensor | Literal["random", "clean"],
    threat: ThreatModel,
    step_size: float,
    steps: int,
    *,
    rule: StepRule | None = None,
    allow_unused: bool = False,
    after_step: AfterStep | None = None,
) -> Tensor:
    """T steps of projected ascent of a per-example objective around ``x`` (see the module docstring).

    The caller chooses the model's mode and holds any model-level context (softplus swap); the
    loop runs under ``torch.enable_grad()`` and out of inference mode, and never touches the
    model's weights' ``.grad``.

    Args:
        objective: ``objective(x_t, rows)`` → J (R,) or (J, moving); see :data:`AscentObjective`.
        x: (B, C, H, W) clean inputs in [0, 1], the centre of the ball.
        start: (B, C, H, W) the first iterate, or "random" (the threat model's uniform start,
            global RNG) or "clean" (x itself).
        threat: the ball and its projection.
        step_size: α.
        steps: T ≥ 0.
        rule: the step rule s; None: the threat model's own (sign under L∞, L2-normalised under L2).
        allow_unused: read a gradient that does not exist (J independent of x_t) as zero instead
            of raising.
        after_step: hook run on every step's projected iterates; see :data:`AfterStep`.

    Returns:
        (B, C, H, W) the last iterates, detached.
    """
    if isinstance(start, str) and start not in ("random", "clean"):
        raise ValueError(f"start must be a tensor, 'random' or 'clean', got {start!r}")
    with torch.inference_mode(False), torch.enable_grad():
        x = (x.clone() if x.is_inference() else x).detach()
        if isinstance(start, str):
            start = threat.random_init(x) if start == "random" else x.clone()
        x_t = (start.clone() if start.is_inference() else start).detach()
        active: Tensor | None = None  # None: every example still steps
        for t in range(1, steps + 1):
            if active is None:
                rows, x_r, x_0 = None, x_t, x
            else:
                rows = active.nonzero().flatten()  # (R,) only the examples still stepping do work
                if rows.numel() == 0:
                    break
                x_r, x_0 = x_t[rows], x[rows]
            x_r = x_r.detach().requires_grad_(True)
            out = objective(x_r, rows)
            value, moving = out if isinstance(out, tuple) else (out, None)
            grad = _gradient(value, x_r, allow_unused)
            x_r = x_r.detach()
            x_new = threat.project(x_r + step_displacement(rule, threat, grad, step_size), x_0)
            if moving is not None:
                x_new = torch.where(moving.view(-1, *([1] * (x.dim() - 1))), x_new, x_r)
            accepted = after_step(t, rows, x_new) if after_step is not None else None
            if accepted is None:
                if rows is None:
                    x_t = x_new
                else:
                    x_t = x_t.clone()
                    x_t[rows] = x_new
                continue
            rows = torch.arange(x.shape[0], device=x.device) if rows is None else rows
            x_t = x_t.clone()
            x_t[rows[accepted]] = x_new[accepted]
            if active is None:
                active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
            active[rows[~accepted]] = False
    return x_t.detach()
