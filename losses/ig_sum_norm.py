"""IG-SUM-NORM: adversarial cross-entropy plus the integrated-gradients norm along the same path.

Chen, Wu, Rastogi, Liang & Jha, "Robust Attribution Regularization", NeurIPS 2019, the second
instance of their objective (the first is :class:`losses.IGNorm`):

    L = meanᵢ max_{x' ∈ B_ε(xᵢ) ∩ [0,1]^d} [ ℓ(x', yᵢ) + β · ‖IG^ℓ(xᵢ, x')‖₁ ],

with ℓ the cross-entropy and IG^ℓ the integrated gradients of ℓ from x to x'
(:func:`losses.integrated_gradients_of_loss`). One x' maximises the sum, so it is neither the
PGD example of ℓ alone nor IG-NORM's end point: composing :class:`losses.PGDAdversarialTraining`
and :class:`losses.IGNorm` in a :class:`losses.WeightedSum` would optimise two different
points. The maximisation is projected sign-gradient ascent on the sum, differentiating through
the path gradients; the loss is then taken at that x' with gradients to the weights only.

Authors' settings (github.com/jfc43/robust-attribution-regularization,
``MNIST/IG-SUM-NORM-config.json``): β = 0.1; the penalty with m = 50 Riemann steps; the search
40 sign steps of 0.01 from a uniform random start at ε = 0.3 (Fashion-MNIST: 20 steps at
ε = 0.1) on a coarser sum of m / 5 = 10 steps. The authors sum ℓ and the norm over the batch
(TensorFlow ``reduce_sum``) where this takes means; with Adam the two differ only by Adam's ε.
Cost as IG-NORM's (attack steps · m' + m double-backprop passes a step). Eager mode only;
refuses float16 autocast (see :mod:`losses.input_gradients`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks import PGD
from losses.base import ObjectiveOutput, StepContext, upcast
from losses.ig_norm import IntegratedGradientsPathObjective, integrated_gradients_of_loss
from losses.input_gradients import maximise_in_ball, refuse_float16_autocast
from losses.pgd_at import scaled_attack


class IGSumNorm(IntegratedGradientsPathObjective):
    """Cross-entropy at x' plus β · ‖IG^ℓ(x, x')‖₁, x' maximising their sum in the ε-ball.

    Args:
        beta: β ≥ 0, the weight of the IG norm (0.1 in the paper; 0 is PGD adversarial training
            on the cross-entropy).
        riemann_steps: m ≥ 1, points of the Riemann sum of the penalty (50 in the paper).
        attack: the inner search: ε, norm, step size, steps, random start, model mode (default:
            L∞, ε = 8/255, step 2/255, 10 steps).
        eps_warmup_steps: steps over which ε ramps up to the attack's value.
        attack_riemann_steps: points of the Riemann sum inside the search (None: the same as
            ``riemann_steps``; 10 in the authors' code).
    """

    log_name = "ig_sum_norm"

    def __init__(
        self,
        beta: float = 0.1,
        riemann_steps: int = 50,
        attack: PGD | None = None,
        eps_warmup_steps: int = 0,
        attack_riemann_steps: int | None = None,
    ) -> None:
        super().__init__(riemann_steps, attack, eps_warmup_steps, attack_riemann_steps)
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.beta = float(beta)

    def worst_endpoint(self, model: nn.Module, x: Tensor, y: Tensor, attack: PGD) -> Tensor:
        """x' (B, C, H, W) maximising ℓ(x', y) + β‖IG^ℓ(x, x')‖₁ by projected sign ascent; detached."""
        x = x.detach()

        def objective(x_adv: Tensor) -> Tensor:
            ce = F.cross_entropy(upcast(model(x_adv)), y, reduction="none")  # (B,)
            if self.beta == 0.0:
                return ce
            ig = integrated_gradients_of_loss(model, x, x_adv, y, self.attack_riemann_steps)
            return ce + self.beta * upcast(ig.flatten(1)).abs().sum(1)

        return maximise_in_ball(attack, model, x, objective)

    def forward(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext | None = None) -> ObjectiveOutput:
        refuse_float16_autocast(x, type(self).__name__)
        attack = scaled_attack(self.attack, self.warmup.next_fraction(context))
        x_end = self.worst_endpoint(model, x, y, attack)
        logits_adv = model(x_end)
        ce_adv = F.cross_entropy(upcast(logits_adv), y)
        ig = integrated_gradients_of_loss(model, x.detach(), x_end, y, self.riemann_steps)
        ig_l1 = upcast(ig.flatten(1)).abs().sum(1).mean()
        loss = ce_adv + self.beta * ig_l1
        logs = {"ce_adv": ce_adv.detach(), "ig_l1": ig_l1.detach()}
        if self.warmup.warmup_steps:
            logs["eps"] = torch.tensor(attack.eps, device=x.device)
        return ObjectiveOutput(loss, logs, logits_adv)
