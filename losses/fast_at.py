"""Fast adversarial training with FGSM-RS, and a watch for catastrophic overfitting.

Wong, Rice & Kolter, "Fast is better than free: Revisiting adversarial training", ICLR 2020.
Train on the FGSM-RS example (one signed-gradient step of α = 1.25·ε from a uniform start,
:class:`attacks.FGSMRandomStart`):

    L = meanᵢ CE(f(x'ᵢ), yᵢ),   x' = FGSM-RS(x, y)

at the cost of about two ERM steps instead of PGD-K's K + 1.

FGSM training is known to collapse suddenly ("catastrophic overfitting", CO): the model
becomes robust to the FGSM example alone while its PGD accuracy falls to about zero within a
few hundred steps. Wong et al. watch the PGD accuracy on a training minibatch and stop when it
drops by more than 0.2. Here, every ``co_check_every`` steps, PGD accuracy is measured on a
fixed probe (the first ``co_check_size`` training examples this objective sees, kept in
memory, with a seeded PGD so consecutive checks differ only by the model); CO is declared when
it falls more than ``co_drop`` below the best check so far. Checks start once the ε warm-up
is over (a growing ε lowers PGD accuracy without any collapse). Under DDP the probe counts are
summed over processes, so every process reaches the same decision.

On detection, ``on_catastrophic_overfitting`` chooses: "warn" (a warning, training goes on),
"stop" (the objective sets :attr:`stop_requested`; the LightningModule ends the fit after
the step, and the best checkpoint by ``val/acc_pgd`` is the model from before the collapse),
or "fallback_to_pgd" (the rest of training uses PGD-AT with ``fallback_attack``). The
``co_detected`` log is 0 until detection and 1 from then on; ``co_pgd_acc`` is the probe's PGD
accuracy at the latest check, logged on every step from the first check on (so that it shows
whatever ``log_every_n_steps`` is). With "warn" the checks go on after a detection (one warning),
so the curve shows whether the model recovers; the other actions stop checking.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from attacks import PGD, FGSMRandomStart
from common.modes import module_mode
from losses.base import Objective, ObjectiveOutput, StepContext, upcast
from losses.input_gradients import adversarial_forward
from losses.pgd_at import EpsilonWarmup, adversarial_example, scaled_attack

COAction = Literal["warn", "stop", "fallback_to_pgd"]
CO_ACTIONS: tuple[str, ...] = ("warn", "stop", "fallback_to_pgd")


def _pgd_like(attack: PGD, seed: int | None) -> PGD:
    """PGD-10 with the threat model of ``attack`` and step ε/4 (Wong et al.'s check uses ε/4)."""
    step_size = attack.eps / 4 if attack.eps > 0 else 1.0  # ε = 0: any α, the attack returns x
    return PGD(eps=attack.eps, step_size=step_size, steps=10, norm=attack.norm, seed=seed)


class FastAdversarialTraining(Objective):
    """Cross-entropy on the FGSM-RS example, with catastrophic-overfitting detection.

    Args:
        attack: the training attack (default: FGSM-RS at ε = 8/255, α = 10/255, the paper's
            CIFAR-10 setting; MNIST is ε = 0.3, α = 0.375).
        eps_warmup_steps: steps over which ε and α ramp linearly to the attack's values.
        co_check_every: check PGD accuracy every this many training steps (0: never).
        co_check_size: examples in the fixed probe of the check.
        co_attack: the PGD of the check (default: ε of ``attack``, step ε/4, 10 steps, seeded;
            Wong et al. check with 5 steps of 2/255 at ε = 8/255).
        co_drop: CO is declared when the probe's PGD accuracy falls more than this below its
            best check so far (0.2 in Wong et al.).
        on_catastrophic_overfitting: "warn", "stop" or "fallback_to_pgd".
        fallback_attack: the PGD used for training after a fallback (default: ε of
            ``attack``, step ε/4, 10 steps, unseeded).
    """

    log_name = "fast_at"

    def __init__(
        self,
        attack: PGD | None = None,
        eps_warmup_steps: int = 0,
        co_check_every: int = 50,
        co_check_size: int = 64,
        co_attack: PGD | None = None,
        co_drop: float = 0.2,
        on_catastrophic_overfitting: COAction = "warn",
        fallback_attack: PGD | None = None,
    ) -> None:
        super().__init__()
        if int(co_check_every) != co_check_every or co_check_every < 0:
            raise ValueError(f"co_check_every must be an integer >= 0, got {co_check_every}")
        if int(co_check_size) != co_check_size or co_check_size < 1:
            raise ValueError(f"co_check_size must be an integer >= 1, got {co_check_size}")
        if not 0.0 < co_drop <= 1.0:
            raise ValueError(f"co_drop must be in (0, 1], got {co_drop}")
        if on_catastrophic_overfitting not in CO_ACTIONS:
            raise ValueError(
                f"on_catastrophic_overfitting must be one of {CO_ACTIONS}, got {on_catastrophic_overfitting!r}"
            )
        self.attack = attack if attack is not None else FGSMRandomStart(eps=8 / 255)
        self.co_attack = co_attack if co_attack is not None else _pgd_like(self.attack, seed=0)
        self.fallback_attack = fallback_attack if fallback_attack is not None else _pgd_like(self.attack, seed=None)
        self.co_check_every = int(co_check_every)
        self.co_check_size = int(co_check_size)
        self.co_drop = float(co_drop)
        self.on_catastrophic_overfitting = on_catastrophic_overfitting
        self.warmup = EpsilonWarmup(eps_warmup_steps)
        # Saved in checkpoints, so that a resumed run keeps its decision (and its fallback).
        self.register_buffer("co_detected", torch.zeros((), dtype=torch.bool))
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))
        # Python copies of the buffers, read from them once (after any checkpoint is loaded) so
        # that the step does not wait on the device to learn whether to check.
        self._detected: bool | None = None
        self._steps: int | None = None
        # The probe and its best accuracy are taken again after a resume.
        self._probe: tuple[Tensor, Tensor] | None = None
        self._best_check = -math.inf
        self._last_check: Tensor | None = None
        self._stop_reason: str | None = None

    @property
    def stop_requested(self) -> str | None:
        """Why training should end after this step (CO with ``on_catastrophic_overfitting: stop``)."""
        return self._stop_reason

    @property
    def detected(self) -> bool:
        """Whether catastrophic overfitting has been detected (in this run or before a resume)."""
        if self._detected is None:
            self._detected = bool(self.co_detected)
        return self._detected

    @property
    def falling_back(self) -> bool:
        return self.detected and self.on_catastrophic_overfitting == "fallback_to_pgd"

    def probe_pgd_accuracy(self, model: nn.Module, attack: PGD) -> float:
        """PGD accuracy of ``model`` on the probe, summed over DDP processes when there are any."""
        assert self._probe is not None
        x, y = self._probe
        x_adv = attack(model, x, y)
        with torch.no_grad(), module_mode(model, "eval"):
            correct = (model(x_adv).argmax(1) == y).sum().float()
        counts = torch.stack([correct, torch.tensor(float(y.numel()), device=y.device)])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)
        return float(counts[0] / counts[1])

    def _check(self, model: nn.Module, x: Tensor, y: Tensor, fraction: float) -> None:
        """Run the CO check when it is due."""
        if self._probe is None:
            self._probe = (x[: self.co_check_size].detach().clone(), y[: self.co_check_size].detach().clone())
        if self._steps is None:
            self._steps = int(self.steps_seen)
        step = self._steps
        self._steps += 1
        self.steps_seen += 1
        if self.co_check_every == 0 or fraction < 1.0 or step % self.co_check_every:
            return
        if self.detected and self.on_catastrophic_overfitting != "warn":
            return  # acted on: the fit stops, or PGD-AT takes over
        accuracy = self.probe_pgd_accuracy(model, self.co_attack)
        if not self.detected and accuracy < self._best_check - self.co_drop:
            self._on_detection(step, accuracy)
        self._best_check = max(self._best_check, accuracy)
        self._last_check = torch.tensor(accuracy, device=x.device)

    def _on_detection(self, step: int, accuracy: float) -> None:
        self.co_detected.fill_(True)
        self._detected = True
        message = (
            f"catastrophic overfitting at training step {step} of this objective: PGD accuracy on the probe "
            f"fell to {accuracy:.3f} from a best of {self._best_check:.3f} (co_drop {self.co_drop})"
        )
        if self.on_catastrophic_overfitting == "stop":
            self._stop_reason = message
        elif self.on_catastrophic_overfitting == "fallback_to_pgd":
            warnings.warn(f"{message}; training goes on with PGD ({self.fallback_attack!r})", stacklevel=2)
        else:
            warnings.warn(message, stacklevel=2)

    def _adversarial(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext | None) -> tuple[PGD, Tensor]:
        """This step's check (once per step, also when evaluated again within it), attack and example."""
        fraction = self.warmup.next_fraction(context)
        if context is None:
            self._check(model, x, y, fraction)
        else:
            context.get(("fast_at_check", id(self)), lambda: self._check(model, x, y, fraction))
        attack = scaled_attack(self.fallback_attack if self.falling_back else self.attack, fraction)
        return attack, adversarial_example(attack, model, x, y, context)

    def prepare(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext) -> None:
        self._adversarial(model, x, y, context)

    def forward(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext | None = None) -> ObjectiveOutput:
        attack, x_adv = self._adversarial(model, x, y, context)
        _, logits_adv = adversarial_forward(model, x_adv, attack, context, needs_input_grad=False)
        ce_adv = F.cross_entropy(upcast(logits_adv), y)
        logs = {"ce_adv": ce_adv.detach(), "co_detected": self.co_detected.float()}
        if self._last_check is not None:
            logs["co_pgd_acc"] = self._last_check
        if self.warmup.warmup_steps:
            logs["eps"] = torch.tensor(attack.eps, device=x.device)
        return ObjectiveOutput(ce_adv, logs, logits_adv, logits_adv)
