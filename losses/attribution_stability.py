"""Attribution stability: keep the input gradient's direction under small perturbations.

In the spirit of Singh et al., "Attributional Robustness Training using Input-Gradient Spatial
Alignment" (ECCV 2020) and Wang & Kong, "Exploiting the Relationship Between Kendall's Rank
Correlation and Cosine Similarity for Attribution Protection" (NeurIPS 2022):

    λ · R,   R = meanᵢ [ 1 − cos( g(xᵢ), g(x'ᵢ) ) ],   g(x) = ∇ₓ f_y(x),

the saliency map of the label logit, with λ the ``weight`` of this part in a
:class:`losses.WeightedSum` (this objective returns R) and x' in the ε-ball around x chosen by
``perturbation``:

- "random": a uniform point of the ball (cheap; the default);
- "adversarial": PGD on the cosine distance 1 − cos(g(x), g(x')) itself (the attack on the
  explanation). Its ascent direction is a second derivative of f_y, which is zero almost
  everywhere for a ReLU network: use a softplus backbone (``activation: softplus``), otherwise
  the search stays at its random start;
- "ce_adversarial": the cross-entropy PGD example of ``attack``, the same tensor as PGD-AT's
  when both use the same attack and warm-up, so PGD-AT + attribution stability attacks once per
  step (Wang & Kong's pairing with adversarial training).

Both gradients keep their graph (``create_graph=True``), so the weights learn to align them.
The clean one is shared with any other part of the step that needs it; on CUDA the clean and
perturbed batches go through one forward where that cannot change a number
(:mod:`losses.gradient_pairs` states the rule: not with BatchNorm in train mode, nor when a part
before it has run the clean forward already).
A regulariser: it returns the unweighted penalty R and no logits; compose it with
:class:`losses.WeightedSum`.
The label logit's input gradient does not depend on the last layer's bias, so alone this
penalty leaves that bias without a gradient (DDP's unused-parameter check would object);
composed with a training loss every parameter is used. Eager mode only; refuses float16
autocast (see :mod:`losses.input_gradients`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from attacks import PGD
from common.modes import module_mode
from losses.base import Objective, ObjectiveOutput, StepContext, attack_key, refuse_penalty_weight
from losses.gradient_pairs import gradient_pair
from losses.input_gradients import (
    adversarial_forward,
    flat_cosine,
    input_leaf,
    maximise_in_ball,
    per_example_logit_gradient,
    refuse_float16_autocast,
)
from losses.pgd_at import EpsilonWarmup, adversarial_example, scaled_attack

Perturbation = Literal["random", "adversarial", "ce_adversarial"]
PERTURBATIONS: tuple[str, ...] = ("random", "adversarial", "ce_adversarial")


def saliency_with_graph(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """g(x) = ∇ₓ f_y(x), (B, C, H, W), differentiable in the weights and in ``x``."""
    x_leaf = input_leaf(x)
    return per_example_logit_gradient(x_leaf, model(x_leaf), y, create_graph=True)


class AttributionStability(Objective):
    """R = meanᵢ (1 − cos(g(xᵢ), g(x'ᵢ))) with g the label-logit input gradient; λ is the part's
    weight.

    Args:
        penalty_weight: retired; giving it raises ``ValueError`` naming the part's ``weight``,
            which now holds λ.
        perturbation: "random", "adversarial" or "ce_adversarial" (see the module docstring).
        attack: the ball (ε, norm) and, for the adversarial modes, the search (step size,
            steps, model mode). Default: L∞, ε = 8/255, step 2/255, 10 steps.
        eps_warmup_steps: steps over which ε ramps up (as in PGD-AT; use the same value as a
            PGD-AT part to share its adversarial example).
    """

    log_name = "attribution_stability"

    def __init__(
        self,
        penalty_weight: float | None = None,
        perturbation: Perturbation = "random",
        attack: PGD | None = None,
        eps_warmup_steps: int = 0,
    ) -> None:
        refuse_penalty_weight(penalty_weight, type(self).__name__)
        super().__init__()
        if perturbation not in PERTURBATIONS:
            raise ValueError(f"perturbation must be one of {PERTURBATIONS}, got {perturbation!r}")
        self.perturbation = perturbation
        self.attack = attack if attack is not None else PGD(eps=8 / 255, step_size=2 / 255, steps=10)
        self.warmup = EpsilonWarmup(eps_warmup_steps)

    def perturbed_input(
        self, model: nn.Module, x: Tensor, y: Tensor, attack: PGD, context: StepContext | None
    ) -> Tensor:
        """x' (B, C, H, W), detached, in the ε-ball of ``attack`` around ``x``; memoised per step
        under a shared context (drawn or searched once, at the weights of the first call)."""
        if context is None or self.perturbation == "ce_adversarial":  # the latter is memoised by PGD-AT's key
            return self._perturbed_input(model, x, y, attack, context)
        key = ("attribution_stability_input", self.perturbation, attack_key(attack))
        return context.get(key, lambda: self._perturbed_input(model, x, y, attack, context))

    def _perturbed_input(
        self, model: nn.Module, x: Tensor, y: Tensor, attack: PGD, context: StepContext | None
    ) -> Tensor:
        if self.perturbation == "random":
            return attack.threat.random_init(x.detach())
        if self.perturbation == "ce_adversarial":
            return adversarial_example(attack, model, x, y, context)
        with torch.enable_grad(), module_mode(model, attack.model_mode):
            x_leaf = input_leaf(x)
            reference = per_example_logit_gradient(x_leaf, model(x_leaf), y, create_graph=False)  # (B, C, H, W)

        def cosine_distance(x_adv: Tensor) -> Tensor:
            g_adv = per_example_logit_gradient(x_adv, model(x_adv), y, create_graph=True)
            return 1.0 - flat_cosine(reference, g_adv)

        return maximise_in_ball(attack, model, x, cosine_distance)

    def prepare(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext) -> None:
        attack = scaled_attack(self.attack, self.warmup.next_fraction(context))
        self.perturbed_input(model, x, y, attack, context)

    def forward(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext | None = None) -> ObjectiveOutput:
        refuse_float16_autocast(x, type(self).__name__)
        attack = scaled_attack(self.attack, self.warmup.next_fraction(context))
        x_perturbed = self.perturbed_input(model, x, y, attack, context)
        perturbed_forward = None
        if self.perturbation == "ce_adversarial":  # PGD-AT's forward at the same example, if any
            perturbed_forward = adversarial_forward(model, x_perturbed, attack, context, needs_input_grad=True)
        g_clean, g_perturbed = gradient_pair(model, x, x_perturbed, y, "logit", context, perturbed_forward)
        cosine = flat_cosine(g_clean, g_perturbed).mean()
        penalty = 1.0 - cosine
        logs = {"penalty": penalty.detach(), "cosine": cosine.detach()}
        if self.warmup.warmup_steps:
            logs["eps"] = torch.tensor(attack.eps, device=x.device)
        return ObjectiveOutput(penalty, logs, None)
