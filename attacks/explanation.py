"""Attacks on explanations: move the attribution, keep the prediction.

Ghorbani, Abid & Zou, "Interpretation of Neural Networks is Fragile", AAAI 2019, top-k attack.
Let B be the set of the k pixels with the largest attribution mass at the clean input x, with
maps summed |Φ| over channels and normalised to sum 1, m(x) = Σ_c|Φ_c(x)| / Σ|Φ(x)|. Each step
pushes mass out of B with a signed step inside the threat model (L∞ ball ∩ [0, 1]):

    x_{t+1} = Π( x_t − α · sign(∇_x Σ_{i∈B} m(x_t)_i) )

For a ReLU network ∇_x Φ is zero almost everywhere, so the gradient of the attack loss is taken
on the same network with every ReLU replaced by softplus_β (Dombrowski et al., NeurIPS 2019;
Ghorbani et al. do the same); the prediction and the top-k intersection of each iterate are
measured on the real network. As in Ghorbani et al. and Chen et al. (NeurIPS 2019), a step only
counts while the predicted label is the clean one: an example whose label flips stops there,
and the attack returns, per example, the iterate with the lowest top-k intersection
|B ∩ top_k(m(x_t))| / k among those that kept the label (x itself when none did better).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor, nn

from attacks.modes import MODEL_MODES, ModelMode, module_mode
from attacks.threat_models import Norm, make_threat_model
from attributions.activations import softplus_relus
from attributions.maps import pixel_map

if TYPE_CHECKING:
    from attributions.base import AttributionMethod

#: Ghorbani et al. and Chen et al. use k = 100 on 28 × 28 inputs; k scales with the pixel count.
TOPK_PER_PIXEL = 100 / 784


def default_topk(height: int, width: int) -> int:
    """k of the top-k protocol for an H × W image: 100 at 28 × 28, proportional to H·W."""
    return max(1, round(TOPK_PER_PIXEL * height * width))


def topk_mask(maps: Tensor, k: int) -> Tensor:
    """Boolean (B, P) mask of the k largest entries of each row of ``maps`` (B, P)."""
    index = maps.topk(k, dim=1).indices  # (B, k)
    return torch.zeros_like(maps, dtype=torch.bool).scatter_(1, index, True)


class ExplanationAttackResult(NamedTuple):
    """What :meth:`TopKExplanationAttack.attack` returns.

    Attributes:
        x_adv: (B, C, H, W) the kept iterate of each example, detached.
        topk_intersection: (B,) its top-k intersection with the clean map (1 when x is kept).
        steps_taken: (B,) steps that kept the label before the example stopped.
        label: (B,) the clean predicted label, which every x_adv keeps.
    """

    x_adv: Tensor
    topk_intersection: Tensor
    steps_taken: Tensor
    label: Tensor


class TopKExplanationAttack:
    """Ghorbani et al.'s top-k attack on an attribution method, batched.

    Args:
        eps: radius of the threat model (protocol: 0.3 on MNIST, 0.1 on Fashion-MNIST).
        step_size: α of each signed step (protocol: 0.01).
        steps: maximum number of steps (protocol: 100).
        k: size of the top set; None is :func:`default_topk` of the input size.
        norm: "linf" (the protocol) or "l2".
        softplus_beta: β of the softplus that replaces ReLU while the attack gradient is taken.
        model_mode: mode of the model during the attack ("eval": BatchNorm on running statistics).
    """

    def __init__(
        self,
        eps: float = 0.1,
        step_size: float = 0.01,
        steps: int = 100,
        k: int | None = None,
        norm: Norm = "linf",
        softplus_beta: float = 10.0,
        model_mode: ModelMode = "eval",
    ) -> None:
        self.threat = make_threat_model(norm, eps)
        if not step_size > 0:
            raise ValueError(f"step_size must be > 0, got {step_size}")
        if int(steps) != steps or steps < 0:
            raise ValueError(f"steps must be an integer >= 0, got {steps}")
        if k is not None and (int(k) != k or k < 1):
            raise ValueError(f"k must be an integer >= 1 or None, got {k}")
        if not softplus_beta > 0:
            raise ValueError(f"softplus_beta must be > 0, got {softplus_beta}")
        if model_mode not in MODEL_MODES:
            raise ValueError(f"model_mode must be one of {MODEL_MODES}, got {model_mode!r}")
        self.eps = float(eps)
        self.step_size = float(step_size)
        self.steps = int(steps)
        self.k = k
        self.norm = norm
        self.softplus_beta = float(softplus_beta)
        self.model_mode = model_mode

    def __repr__(self) -> str:
        return (
            f"TopKExplanationAttack(norm={self.norm}, eps={self.eps:g}, step_size={self.step_size:g}, "
            f"steps={self.steps}, k={self.k}, softplus_beta={self.softplus_beta:g})"
        )

    def __call__(
        self, model: nn.Module, x: Tensor, method: AttributionMethod, target: Tensor | None = None
    ) -> Tensor:
        """The attacked inputs (B, C, H, W); see :meth:`attack`."""
        return self.attack(model, x, method, target).x_adv

    def attack(
        self, model: nn.Module, x: Tensor, method: AttributionMethod, target: Tensor | None = None
    ) -> ExplanationAttackResult:
        """Attack ``method``'s explanation of class ``target`` (None: the predicted class).

        Args:
            model: classifier taking images in [0, 1]; its ``nn.ReLU`` modules are swapped for
                softplus while the attack gradient is taken, and put back.
            x: (B, C, H, W) clean inputs in [0, 1].
            method: the attribution method attacked (any; it is made differentiable with
                :meth:`AttributionMethod.with_create_graph` for the attack gradient).
            target: (B,) classes whose explanation is attacked, or None.
        """
        b, _, h, w = x.shape
        k = default_topk(h, w) if self.k is None else self.k
        if k > h * w:
            raise ValueError(f"k must be <= the number of pixels {h * w}, got {k}")
        differentiable = method.with_create_graph(True)
        with torch.inference_mode(False), torch.enable_grad(), module_mode(model, self.model_mode):
            x = (x.clone() if x.is_inference() else x).detach()
            with torch.no_grad():
                label = model(x).argmax(dim=1)  # (B,)
            target = label if target is None else (target.clone() if target.is_inference() else target)
            clean_top = topk_mask(pixel_map(method(model, x, target)).flatten(1), k)  # (B, P)

            best_x = x.clone()
            best_inter = torch.ones(b, device=x.device)
            steps_taken = torch.zeros(b, dtype=torch.long, device=x.device)
            x_t = x.clone()
            active = torch.ones(b, dtype=torch.bool, device=x.device)
            for _ in range(self.steps):
                rows = active.nonzero().flatten()  # only the examples still attacking do work
                if rows.numel() == 0:
                    break
                xr, x0, tr, top = x_t[rows], x[rows], target[rows], clean_top[rows]
                grad = self._loss_gradient(model, xr, differentiable, tr, top)
                x_new = self.threat.project(xr - self.threat.step(grad, self.step_size), x0)
                with torch.no_grad():
                    kept = model(x_new).argmax(dim=1) == label[rows]  # (R,)
                inter = topk_intersection_with(pixel_map(method(model, x_new, tr)).flatten(1), top, k)  # (R,)
                better = kept & (inter < best_inter[rows])
                x_t[rows] = torch.where(kept.view(-1, 1, 1, 1), x_new, xr)
                best_x[rows[better]] = x_new[better]
                best_inter[rows[better]] = inter[better]
                steps_taken[rows[kept]] += 1
                active[rows[~kept]] = False
        return ExplanationAttackResult(best_x, best_inter, steps_taken, label)

    def _loss_gradient(
        self, model: nn.Module, x: Tensor, method: AttributionMethod, target: Tensor, top: Tensor
    ) -> Tensor:
        """∇_x of the attribution share inside the clean top-k set, on the softplus network."""
        x = x.detach().requires_grad_(True)
        with softplus_relus(model, self.softplus_beta):
            maps = pixel_map(method(model, x, target)).flatten(1)  # (R, P)
        share = (maps * top).sum(dim=1) / maps.sum(dim=1).clamp_min(1e-12)  # (R,)
        if not share.requires_grad:  # a method that does not depend on x differentiably: no move
            return torch.zeros_like(x)
        (grad,) = torch.autograd.grad(share.sum(), [x], allow_unused=True)
        return torch.zeros_like(x) if grad is None else grad


def topk_intersection_with(maps: Tensor, top: Tensor, k: int) -> Tensor:
    """|top ∩ top_k(maps)| / k per row, for maps (B, P) and a boolean top set (B, P)."""
    return (topk_mask(maps, k) & top).sum(dim=1).float() / k
