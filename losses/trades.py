"""TRADES: trade natural accuracy against robustness with a KL boundary term.

Zhang, Yu, Jiao, Xing, El Ghaoui & Jordan, "Theoretically Principled Trade-off between
Robustness and Accuracy", ICML 2019:

    L = meanᵢ [ CE(f(xᵢ), yᵢ) + β · KL( p(xᵢ) ‖ p(x'ᵢ) ) ],
    x'ᵢ = argmax_{x' ∈ B_ε(xᵢ) ∩ [0,1]^d} KL( p(xᵢ) ‖ p(x') ),

with p = softmax(f). The inner maximisation is PGD on the KL from x + 0.001·N(0, I) (at x' = x
the KL has its minimum and a zero gradient, so the search must start off it), with the model in
eval mode and the clean probabilities fixed. Gradients of the outer loss flow through both
p(x) and p(x'), as in the authors' code. Paper defaults: β = 6; CIFAR-10 ε = 8/255, step 2/255,
10 steps; MNIST ε = 0.3, step 0.01, 40 steps.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks import PGD, ThreatModel
from common.modes import module_mode
from losses.base import Objective, ObjectiveOutput, StepContext, attack_key, upcast
from losses.input_gradients import clean_forward
from losses.pgd_at import EpsilonWarmup, scaled_attack

TRADES_START_STD = 0.001
"""Standard deviation of the Gaussian start of TRADES' inner maximisation."""


def kl_divergence(logits_p: Tensor, logits_q: Tensor) -> Tensor:
    """KL(p ‖ q) = Σ_k p_k (log p_k − log q_k) of each row, with p, q = softmax of the logits, (B,).

    Computed in float32 from log-softmaxes (no log of a rounded-to-zero probability).
    """
    log_p = F.log_softmax(upcast(logits_p), dim=1)  # (B, K)
    log_q = F.log_softmax(upcast(logits_q), dim=1)
    return F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(1)


def _kl_from_probabilities(logits_adv: Tensor, p_clean: Tensor) -> Tensor:
    """KL(p_clean ‖ softmax(logits_adv)) per example: the attack loss of TRADES, (B,)."""
    log_q = F.log_softmax(upcast(logits_adv), dim=1)
    return F.kl_div(log_q, p_clean, reduction="none").sum(1)


class _GaussianStart(ThreatModel):
    """A threat model whose random start is x + σ·N(0, I), brought into the ball and [0, 1]."""

    def __init__(self, inner: ThreatModel, std: float) -> None:
        super().__init__(inner.eps)
        self.inner = inner
        self.norm = inner.norm
        self.std = std

    def random_init(self, x: Tensor, generator: torch.Generator | None = None, clip: bool = True) -> Tensor:
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        start = x + self.std * noise
        return self.inner.project(start, x) if clip else start

    def step(self, grad: Tensor, step_size: float) -> Tensor:
        return self.inner.step(grad, step_size)

    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:
        return self.inner.project(x_adv, x)


def trades_attack(attack: PGD) -> PGD:
    """A copy of ``attack`` whose random start is TRADES' x + 0.001·N(0, I)."""
    trades = copy.copy(attack)
    trades.threat = _GaussianStart(attack.threat, TRADES_START_STD)
    return trades


class TRADES(Objective):
    """Clean cross-entropy plus β times the KL between clean and adversarial predictions.

    Args:
        beta: β ≥ 0, the weight of the boundary term (6 in the paper; 0 is ERM).
        attack: the inner maximiser's search: ε, step size, steps, norm, model mode (default:
            L∞, ε = 8/255, step 2/255, 10 steps, eval mode, as the paper on CIFAR-10). With
            ``random_start`` it starts from x + 0.001·N(0, I); without, from x, where the KL's
            gradient is zero and the search cannot move.
        eps_warmup_steps: training steps over which ε and the step size ramp linearly up to
            the attack's values (see :class:`losses.EpsilonWarmup`); 0 for full ε at once.
    """

    log_name = "trades"

    def __init__(self, beta: float = 6.0, attack: PGD | None = None, eps_warmup_steps: int = 0) -> None:
        super().__init__()
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.beta = float(beta)
        self.attack = attack if attack is not None else PGD(eps=8 / 255, step_size=2 / 255, steps=10)
        self.warmup = EpsilonWarmup(eps_warmup_steps)

    def adversarial_example(self, model: nn.Module, x: Tensor, attack: PGD, context: StepContext | None) -> Tensor:
        """x' maximising KL(p(x) ‖ p(x')) in the ball; memoised per step under a shared context."""

        def compute() -> Tensor:
            with torch.no_grad(), module_mode(model, attack.model_mode):
                p_clean = F.softmax(upcast(model(x)), dim=1)  # (B, K)
            return trades_attack(attack).perturb(model, x, p_clean, loss_fn=_kl_from_probabilities)

        if context is None:
            return compute()
        return context.get(("trades_adversarial", attack_key(attack)), compute)

    def prepare(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext) -> None:
        attack = scaled_attack(self.attack, self.warmup.next_fraction(context))
        self.adversarial_example(model, x, attack, context)

    def forward(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext | None = None) -> ObjectiveOutput:
        attack = scaled_attack(self.attack, self.warmup.next_fraction(context))
        x_adv = self.adversarial_example(model, x, attack, context)
        _, logits = clean_forward(model, x, context, needs_input_grad=False)
        logits_adv = model(x_adv)
        ce = F.cross_entropy(upcast(logits), y)
        kl = kl_divergence(logits, logits_adv).mean()
        loss = ce + self.beta * kl
        logs = {"ce": ce.detach(), "kl": kl.detach()}
        if self.warmup.warmup_steps:
            logs["eps"] = torch.tensor(attack.eps, device=x.device)
        return ObjectiveOutput(loss, logs, logits, logits_adv)
