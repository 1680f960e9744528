"""MART: misclassification-aware adversarial training.

Wang, Zou, Yi, Bailey, Ma & Gu, "Improving Adversarial Robustness Requires Revisiting
Misclassified Examples", ICLR 2020:

    L = meanᵢ [ BCE(p(x'ᵢ), yᵢ) + β · KL( p(xᵢ) ‖ p(x'ᵢ) ) · (1 − p_{yᵢ}(xᵢ)) ],
    BCE(p, y) = −log p_y − log(1 − max_{k≠y} p_k),
    x'ᵢ = argmax_{x' ∈ B_ε(xᵢ) ∩ [0,1]^d} CE(f(x'), yᵢ),

with p = softmax(f). The boosted cross-entropy pushes the adversarial example away from its
most likely wrong class as well as towards the label; the KL term (TRADES' boundary term) is
weighted by how far the clean example is from being classified with confidence, so examples the
model misclassifies weigh the most. The inner maximisation is cross-entropy PGD (unlike TRADES'
KL search).

Following the authors' code (github.com/YisenWang/MART, ``mart.py``):

- the attack starts from x + 0.001·N(0, I) (as TRADES), runs with the model in eval mode, and
  maximises the cross-entropy;
- the most likely wrong class of x' is chosen without gradient, and gradients of the outer loss
  flow through p(x), p(x') and the weight 1 − p_y(x) alike;
- paper defaults: β = 6 (WRN-34-10; the authors' ResNet-18 script uses 5), ε = 8/255, step
  2/255 (their scripts: 0.007), 10 steps.

Departure (numerics only): the authors compute ``log(1.0001 − p_k + 1e-12)`` and weight by
``1.0000001 − p_y``; here log(1 − p_k) is computed exactly in log space,
logsumexp_{j≠k} f_j − logsumexp_j f_j, and the weight is exactly 1 − p_y, so an example
classified correctly with probability 1 gets weight 0. The two agree unless p_k(x') > 0.999,
where the authors' offset caps −log(1 − p_k) at about 9.2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks import PGD
from losses.base import Objective, ObjectiveOutput, StepContext, attack_key, upcast
from losses.input_gradients import clean_forward
from losses.pgd_at import EpsilonWarmup, scaled_attack
from losses.trades import kl_divergence, trades_attack


def boosted_cross_entropy(logits_adv: Tensor, y: Tensor) -> Tensor:
    """BCE(p(x'), y) = −log p_y(x') − log(1 − max_{k≠y} p_k(x')) per example, (B,), in float32.

    The wrong class k is the most likely one other than y (chosen without gradient, as argsort
    in the authors' code); log(1 − p_k) is computed as logsumexp over the classes other than k
    minus logsumexp over all classes.
    """
    logits_adv = upcast(logits_adv)  # (B, K)
    log_z = torch.logsumexp(logits_adv, dim=1)  # (B,)
    log_p_y = logits_adv.gather(1, y[:, None]).squeeze(1) - log_z
    with torch.no_grad():
        wrong = logits_adv.scatter(1, y[:, None], float("-inf")).argmax(dim=1)  # (B,)
    without_wrong = logits_adv.scatter(1, wrong[:, None], float("-inf"))
    log_not_wrong = torch.logsumexp(without_wrong, dim=1) - log_z  # log(1 − p_k)
    return -log_p_y - log_not_wrong


def mart_terms(logits: Tensor, logits_adv: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """MART's per-example parts: BCE(p(x'), y), KL(p(x) ‖ p(x')) and the weight 1 − p_y(x), each (B,).

    The loss is ``bce.mean() + β · (kl · weight).mean()``.
    """
    bce = boosted_cross_entropy(logits_adv, y)
    kl = kl_divergence(logits, logits_adv)
    weight = 1.0 - F.softmax(upcast(logits), dim=1).gather(1, y[:, None]).squeeze(1)
    return bce, kl, weight


class MART(Objective):
    """Boosted cross-entropy on the adversarial example plus a misclassification-weighted KL.

    Args:
        beta: β ≥ 0, the weight of the KL term (6 in the paper for WRN-34-10).
        attack: the inner cross-entropy PGD: ε, step size, steps, norm, model mode (default:
            L∞, ε = 8/255, step 2/255, 10 steps, eval mode). With ``random_start`` it starts
            from x + 0.001·N(0, I) as in the authors' code, without from x.
        eps_warmup_steps: training steps over which ε and the step size ramp linearly up to
            the attack's values (see :class:`losses.EpsilonWarmup`); 0 for full ε at once.

    Logs ``bce``, ``kl`` (the weighted KL term that β multiplies) and ``kl_weight`` (the mean
    of 1 − p_y(x)); ``train/acc`` counts the adversarial examples, as for PGD-AT.
    """

    log_name = "mart"

    def __init__(self, beta: float = 6.0, attack: PGD | None = None, eps_warmup_steps: int = 0) -> None:
        super().__init__()
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.beta = float(beta)
        self.attack = attack if attack is not None else PGD(eps=8 / 255, step_size=2 / 255, steps=10)
        self.warmup = EpsilonWarmup(eps_warmup_steps)

    def adversarial_example(self, model: nn.Module, x: Tensor, y: Tensor, attack: PGD, context: StepContext | None) -> Tensor:
        """x' maximising CE(f(x'), y) from x + 0.001·N(0, I); memoised per step under a shared context."""

        def compute() -> Tensor:
            return trades_attack(attack).perturb(model, x, y)

        if context is None:
            return compute()
        return context.get(("mart_adversarial", attack_key(attack)), compute)

    def prepare(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext) -> None:
        attack = scaled_attack(self.attack, self.warmup.next_fraction(context))
        self.adversarial_example(model, x, y, attack, context)

    def forward(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext | None = None) -> ObjectiveOutput:
        attack = scaled_attack(self.attack, self.warmup.next_fraction(context))
        x_adv = self.adversarial_example(model, x, y, attack, context)
        _, logits = clean_forward(model, x, context, needs_input_grad=False)
        logits_adv = model(x_adv)
        bce, kl, weight = mart_terms(logits, logits_adv, y)
        bce_mean = bce.mean()
        weighted_kl = (kl * weight).mean()
        loss = bce_mean + self.beta * weighted_kl
        logs = {"bce": bce_mean.detach(), "kl": weighted_kl.detach(), "kl_weight": weight.mean().detach()}
        if self.warmup.warmup_steps:
            logs["eps"] = torch.tensor(attack.eps, device=x.device)
        return ObjectiveOutput(loss, logs, logits_adv, logits_adv)
