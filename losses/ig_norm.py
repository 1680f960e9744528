"""IG-NORM: penalise the integrated gradients of the loss over the worst path in the ε-ball.

Chen, Wu, Rastogi, Liang & Jha, "Robust Attribution Regularization", NeurIPS 2019:

    λ · R,   R = meanᵢ ‖IG^ℓ(xᵢ, x'ᵢ)‖₁,   x'ᵢ = argmax_{x' ∈ B_ε(xᵢ) ∩ [0,1]^d} ‖IG^ℓ(xᵢ, x')‖₁,

    IG^ℓ(x, x') = (x' − x) ⊙ ∫₀¹ ∇ℓ(x + α(x' − x)) dα
               ≈ (x' − x) ⊙ (1/m) Σ_{k=1}^{m} ∇ℓ(x + (k/m)(x' − x))   (right Riemann sum),

with ℓ the cross-entropy of the example and λ the ``weight`` of this part in a
:class:`losses.WeightedSum` (this objective returns R). By completeness Σⱼ IGⱼ ≈ ℓ(x') − ℓ(x).
The paper's objective is CE + λ·R with λ = 1: compose with ERM in a :class:`losses.WeightedSum`
(``weight: 1.0`` on this part, written out in the recipes). The maximisation is projected
sign-gradient ascent on ‖IG‖₁ itself (differentiating through the m path gradients), from a
uniform random start, with the m points of the penalty.

Authors' settings (github.com/jfc43/robust-attribution-regularization, ``MNIST/IG-NORM-config.json``):
λ = 1 (the part's weight); the penalty with m = 50 Riemann steps; the inner search 40 sign steps of 0.01 from a
uniform random start at ε = 0.3 (Fashion-MNIST: 20 steps at ε = 0.1) on a coarser sum of
m / 5 = 10 steps (``attack_riemann_steps``: the points α = 5/50, 10/50, ..., 1 of the fine
sum). **Expensive**: each attack step evaluates m' gradients with their graph over a batch m'
times larger, and the penalty another m, so a step costs about (attack steps · m' + m)
double-backprop passes and max(m, m') times the activation memory; reduce the Riemann steps
(and the attack's steps) for a first try. Eager mode only; refuses float16 autocast (see
:mod:`losses.input_gradients`).
The default attack below (10 steps of 2/255 at ε = 8/255) is this project's CIFAR-scale
choice, not the authors'.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attacks import PGD
from losses.base import Objective, ObjectiveOutput, StepContext, refuse_penalty_weight, upcast
from losses.input_gradients import maximise_in_ball, per_example_loss_gradient, refuse_float16_autocast
from losses.pgd_at import EpsilonWarmup, scaled_attack


def integrated_gradients_of_loss(model: nn.Module, x: Tensor, x_end: Tensor, y: Tensor, steps: int) -> Tensor:
    """IG^ℓ(x, x_end) of the per-example cross-entropy, (B, C, H, W), differentiable.

    The graph runs to the weights and to ``x_end`` when it requires grad; ``x`` is the fixed
    baseline. The m path points go through the model as one batch of m·B.
    """
    b = x.shape[0]
    alphas = torch.arange(1, steps + 1, device=x.device, dtype=x.dtype) / steps  # (m,)
    delta = x_end - x  # (B, C, H, W)
    path = x.unsqueeze(0) + alphas.view(-1, 1, 1, 1, 1) * delta.unsqueeze(0)  # (m, B, C, H, W)
    points = path.flatten(0, 1)  # (m·B, C, H, W)
    if not points.requires_grad:
        points.requires_grad_(True)
    # ℓ at each point depends only on that point, so the gradient of the sum is per point.
    grads = per_example_loss_gradient(points, model(points), y.repeat(steps), create_graph=True)
    mean_grad = grads.view(steps, b, *x.shape[1:]).mean(0)  # (B, C, H, W)
    return delta * mean_grad


class IntegratedGradientsPathObjective(Objective):
    """What IG-NORM and IG-SUM-NORM share: the penalty's and the search's Riemann points, the
    inner search (an attack) and its ε warm-up, checked once."""

    def __init__(
        self, riemann_steps: int, attack: PGD | None, eps_warmup_steps: int, attack_riemann_steps: int | None
    ) -> None:
        super().__init__()
        if int(riemann_steps) != riemann_steps or riemann_steps < 1:
            raise ValueError(f"riemann_steps must be an integer >= 1, got {riemann_steps}")
        if attack_riemann_steps is not None and (
            int(attack_riemann_steps) != attack_riemann_steps or attack_riemann_steps < 1
        ):
            raise ValueError(f"attack_riemann_steps must be an integer >= 1 or None, got {attack_riemann_steps}")
        self.riemann_steps = int(riemann_steps)
        self.attack_riemann_steps = self.riemann_steps if attack_riemann_steps is None else int(attack_riemann_steps)
        self.attack = attack if attack is not None else PGD(eps=8 / 255, step_size=2 / 255, steps=10)
        self.warmup = EpsilonWarmup(eps_warmup_steps)


class IGNorm(IntegratedGradientsPathObjective):
    """R = meanᵢ ‖IG^ℓ(xᵢ, x'ᵢ)‖₁ with x' maximising that norm in the ε-ball; λ is the part's
    weight (1 in the paper).

    Args:
        penalty_weight: retired; giving it raises ``ValueError`` naming the part's ``weight``,
            which now holds λ.
        riemann_steps: m ≥ 1, points of the Riemann sum of the penalty (50 in the paper).
        attack: the inner search: ε, norm, step size, steps, random start, model mode (default:
            L∞, ε = 8/255, step 2/255, 10 steps; the authors' settings are in the module
            docstring).
        eps_warmup_steps: steps over which ε ramps up to the attack's value.
        attack_riemann_steps: points of the Riemann sum inside the search (None: the same as
            ``riemann_steps``; 10 in the authors' code).
    """

    log_name = "ig_norm"

    def __init__(
        self,
        penalty_weight: float | None = None,
        riemann_steps: int = 50,
        attack: PGD | None = None,
        eps_warmup_steps: int = 0,
        attack_riemann_steps: int | None = None,
    ) -> None:
        refuse_penalty_weight(penalty_weight, type(self).__name__)
        super().__init__(riemann_steps, attack, eps_warmup_steps, attack_riemann_steps)

    def worst_endpoint(self, model: nn.Module, x: Tensor, y: Tensor, attack: PGD) -> Tensor:
        """x' (B, C, H, W) maximising ‖IG^ℓ(x, x')‖₁ by projected sign ascent; detached."""
        x = x.detach()

        def ig_l1(x_adv: Tensor) -> Tensor:
            ig = integrated_gradients_of_loss(model, x, x_adv, y, self.attack_riemann_steps)
            return ig.flatten(1).abs().sum(1)

        return maximise_in_ball(attack, model, x, ig_l1)

    def forward(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext | None = None) -> ObjectiveOutput:
        refuse_float16_autocast(x, type(self).__name__)
        attack = scaled_attack(self.attack, self.warmup.next_fraction(context))
        x_end = self.worst_endpoint(model, x, y, attack)
        ig = integrated_gradients_of_loss(model, x.detach(), x_end, y, self.riemann_steps)
        ig_l1 = upcast(ig.flatten(1)).abs().sum(1).mean()
        logs = {"penalty": ig_l1.detach(), "ig_l1": ig_l1.detach()}
        if self.warmup.warmup_steps:
            logs["eps"] = torch.tensor(attack.eps, device=x.device)
        return ObjectiveOutput(ig_l1, logs, None)
