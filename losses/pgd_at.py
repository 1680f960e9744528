"""PGD adversarial training (Madry et al., ICLR 2018).

Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning Models Resistant to
Adversarial Attacks". The saddle-point objective

    min_θ E_(x,y) [ max_{x' ∈ B_ε(x) ∩ [0,1]^d} CE(f_θ(x'), y) ]

is approximated by training on the PGD example x' of each batch. ``clean_weight`` = w mixes
in the clean loss, ``L = (1 − w)·CE(f(x'), y) + w·CE(f(x), y)`` (w = 0.5 is Goodfellow et al.'s
2015 mix); w = 0 is Madry's recipe.

From a random initialisation, adversarial training at full ε can settle on the constant
classifier (loss log K, where the attack can no longer hurt). ``eps_warmup_steps`` ramps ε and
the step size linearly from 0 to their targets over the first training steps, the ε-schedule
used by Gowal et al. (2018, interval bound propagation) and curriculum adversarial training
(Cai et al., IJCAI 2018).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks import PGD
from losses.base import Objective, ObjectiveOutput, StepContext, attack_key, upcast
from losses.input_gradients import adversarial_forward, clean_forward


def adversarial_example(attack: PGD, model: nn.Module, x: Tensor, y: Tensor, context: StepContext | None) -> Tensor:
    """The attack's example for (x, y), computed once per step for every part holding this attack."""
    if context is None:
        return attack(model, x, y)
    return context.get(("adversarial", attack_key(attack)), lambda: attack(model, x, y))


def scaled_attack(attack: PGD, fraction: float) -> PGD:
    """A copy of ``attack`` with ε and the step size multiplied by ``fraction`` in (0, 1]; it is
    memoised as the attack it was scaled from (:func:`attack_key`)."""
    if fraction >= 1.0:
        return attack
    scaled = copy.copy(attack)
    scaled.declared_as = getattr(attack, "declared_as", attack)  # type: ignore[attr-defined]
    scaled.threat = copy.copy(attack.threat)
    scaled.eps = scaled.threat.eps = attack.eps * fraction
    scaled.step_size = attack.step_size * fraction
    return scaled


class EpsilonWarmup(nn.Module):
    """Counts training steps and gives the fraction of ε to use: min(1, (t + 1) / warmup).

    The count is a buffer, so it is saved in checkpoints and a resumed run continues the ramp.
    """

    def __init__(self, warmup_steps: int) -> None:
        super().__init__()
        if int(warmup_steps) != warmup_steps or warmup_steps < 0:
            raise ValueError(f"eps_warmup_steps must be an integer >= 0, got {warmup_steps}")
        self.warmup_steps = int(warmup_steps)
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    def next_fraction(self, context: StepContext | None = None) -> float:
        """The fraction for this step; advances the count.

        Within a :class:`StepContext` the fraction is memoised: every call of the same step (an
        objective's ``prepare`` and ``forward``, its evaluation at perturbed weights by
        :class:`losses.AWP`) gets the same fraction and advances the count once.
        """
        if self.warmup_steps == 0:
            return 1.0
        if context is not None:
            return context.get(("eps_fraction", id(self)), self._advance)
        return self._advance()

    def _advance(self) -> float:
        t = int(self.steps_done)
        self.steps_done += 1
        return min(1.0, (t + 1) / self.warmup_steps)


class PGDAdversarialTraining(Objective):
    """Cross-entropy on the PGD adversarial example (optionally mixed with the clean loss).

    Args:
        attack: the training attack (default: L∞ PGD, ε = 8/255, α = 2/255, 10 steps, as
            Madry et al. on CIFAR-10; the MNIST recipe is ε = 0.3, α = 0.01, 40 steps).
        clean_weight: w in [0, 1], the weight of the clean cross-entropy.
        eps_warmup_steps: training steps over which ε and α ramp linearly up to the attack's
            values (0: full ε from the first step).
    """

    log_name = "pgd_at"

    def __init__(self, attack: PGD | None = None, clean_weight: float = 0.0, eps_warmup_steps: int = 0) -> None:
        super().__init__()
        if not 0.0 <= clean_weight <= 1.0:
            raise ValueError(f"clean_weight must be in [0, 1], got {clean_weight}")
        self.attack = attack if attack is not None else PGD()
        self.clean_weight = float(clean_weight)
        self.warmup = EpsilonWarmup(eps_warmup_steps)

    def _adversarial(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext | None) -> tuple[PGD, Tensor]:
        """This step's attack (ε scaled by the warm-up) and its example."""
        attack = scaled_attack(self.attack, self.warmup.next_fraction(context))
        return attack, adversarial_example(attack, model, x, y, context)

    def prepare(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext) -> None:
        self._adversarial(model, x, y, context)

    def forward(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext | None = None) -> ObjectiveOutput:
        attack, x_adv = self._adversarial(model, x, y, context)
        _, logits_adv = adversarial_forward(model, x_adv, attack, context, needs_input_grad=False)
        ce_adv = F.cross_entropy(upcast(logits_adv), y)
        logs = {"ce_adv": ce_adv.detach()}
        if self.warmup.warmup_steps:
            logs["eps"] = torch.tensor(attack.eps, device=x.device)
        if self.clean_weight == 0.0:
            return ObjectiveOutput(ce_adv, logs, logits_adv, logits_adv)
        _, logits_clean = clean_forward(model, x, context, needs_input_grad=False)
        ce_clean = F.cross_entropy(upcast(logits_clean), y)
        logs["ce_clean"] = ce_clean.detach()
        loss = (1.0 - self.clean_weight) * ce_adv + self.clean_weight * ce_clean
        return ObjectiveOutput(loss, logs, logits_adv, logits_adv)
