"""Projected gradient descent (PGD) on the input, under L∞ or L2.

Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018. Starting from a random point of the ε-ball (or from x), take
``steps`` ascent steps on the attack loss and project back after each:

    x_{t+1} = Π_{B_ε(x) ∩ [0,1]^d} ( x_t + α · step(∇_x L(f(x_t), y)) )

where step() is sign() under L∞ and g/‖g‖₂ under L2. With several restarts the attack keeps,
per example, the iterate with the highest final loss.

The loss L is cross-entropy by default (training, and the cheap ``val/acc_pgd`` monitor), or the
Carlini–Wagner margin or Croce & Hein's DLR loss (:mod:`attacks.attack_losses`), whose gradients
do not vanish where the softmax saturates: an evaluation that reports a figure should use one of
them, or :class:`attacks.AutoAttack`.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from attacks.ascent import projected_ascent
from attacks.attack_losses import LOSS_FUNCTIONS, AttackLoss, LossFn, check_attack_loss, check_loss_classes
from attacks.base import EvaluationAttack
from attacks.threat_models import Norm, make_threat_model
from common.example_noise import content_ids, example_seed
from common.modes import MODEL_MODES, ModelMode, module_mode

_PGD_STREAM = 0x9D5


def _normal_tensor(t: Tensor) -> Tensor:
    """``t`` itself, or a copy usable by autograd when it was made under inference mode."""
    return t.clone() if t.is_inference() else t


class PGD(EvaluationAttack):
    """PGD attack under L∞ or L2, with random start and restarts.

    Gradients are taken with ``torch.autograd.grad`` with respect to the input only, so the
    model's parameter ``.grad`` fields are never touched; the model's train/eval flags are
    restored afterwards; inputs stay on the device the caller put them on. The attack works
    when called under ``torch.inference_mode()`` (Lightning's validation loop) and under
    ``torch.autocast`` (bf16-mixed).

    Args:
        eps: radius of the threat model, in [0, 1] pixel units (ε ≤ 1 under L∞).
        step_size: α, the length of each ascent step.
        steps: number of ascent steps K (0 with ``random_start`` is uniform noise).
        norm: "linf" or "l2".
        random_start: start from a uniform point of the ball instead of x.
        restarts: independent random starts; the worst case per example is kept.
        model_mode: mode of the model during the attack: "eval" (BatchNorm on running
            statistics, dropout off, as torchattacks and MadryLab's library do) or "train"
            (batch statistics, and BatchNorm running statistics are updated by the attack's
            forwards, as in Rice et al.'s training code).
        seed: when set, each example's random start comes from a private generator seeded by
            (seed, the example's pixels, the restart): the same image gets the same start in
            any batch, position or process, and the global RNG streams are left untouched
            (what evaluation wants: ``val/acc_pgd`` is the same in one process and under DDP).
            None draws from the global RNG (training).
        loss: the loss maximised by :meth:`__call__`: "ce" (cross-entropy, the default), "margin"
            (Carlini–Wagner) or "dlr" (Croce & Hein; at least 3 classes); see
            :mod:`attacks.attack_losses`.
        early_stop: an example stops moving once the model misclassifies it at the current
            iterate (argmax ≠ target before the step), as in Wong, Rice & Kolter's training code
            (``fast_adversarial``, MNIST and CIFAR: ``delta.data[I] = ...`` with
            ``I = output.max(1)[1] == y``). A weaker training attack than Madry et al.'s, which
            steps every example every time; it lets a small network leave the chance-level
            plateau of PGD training at MNIST's ε = 0.3.
    """

    def __init__(
        self,
        eps: float = 8 / 255,
        step_size: float = 2 / 255,
        steps: int = 10,
        norm: Norm = "linf",
        random_start: bool = True,
        restarts: int = 1,
        model_mode: ModelMode = "eval",
        seed: int | None = None,
        loss: AttackLoss = "ce",
        early_stop: bool = False,
    ) -> None:
        self.threat = make_threat_model(norm, eps)
        if not step_size > 0:
            raise ValueError(f"step_size must be > 0, got {step_size}")
        if int(steps) != steps or steps < 0:
            raise ValueError(f"steps must be an integer >= 0, got {steps}")
        if int(restarts) != restarts or restarts < 1:
            raise ValueError(f"restarts must be an integer >= 1, got {restarts}")
        if model_mode not in MODEL_MODES:
            raise ValueError(f"model_mode must be one of {MODEL_MODES}, got {model_mode!r}")
        self.eps = float(eps)
        self.step_size = float(step_size)
        self.steps = int(steps)
        self.norm = norm
        self.random_start = bool(random_start)
        #: project the random start into [0, 1] before the first gradient (FGSM-RS can leave it
        #: unclipped, as Wong et al.'s MNIST code does); every iterate after a step is projected
        self.clip_start = True
        self.restarts = int(restarts)
        self.model_mode = model_mode
        self.seed = seed
        self.loss = check_attack_loss(loss)
        self.early_stop = bool(early_stop)

    def __repr__(self) -> str:
        return (
            f"PGD(norm={self.norm}, eps={self.eps:g}, step_size={self.step_size:g}, steps={self.steps}, "
            f"random_start={self.random_start}, restarts={self.restarts}, model_mode={self.model_mode}, "
            f"loss={self.loss}" + (", early_stop=True)" if self.early_stop else ")")
        )

    @property
    def name(self) -> str:
        """A short name for logged keys and tables: ``pgd10-ce``, ``pgd40-margin``, ``pgd20x5-dlr``."""
        restarts = f"x{self.restarts}" if self.restarts > 1 else ""
        return f"pgd{self.steps}{restarts}-{self.loss}"

    def check_num_classes(self, num_classes: int) -> None:
        """Raise a ValueError naming ``loss`` when the loss is undefined for ``num_classes`` classes."""
        check_loss_classes(self.loss, num_classes)

    def at_eps(self, eps: float) -> PGD:
        """A copy of this attack at radius ``eps``, with the step size scaled in proportion
        (α/ε kept; from an attack at ε = 0, α = 2.5 ε / steps as in Madry et al.).

        Raises:
            ValueError: naming ``eps`` when it is out of range for the norm.
        """
        scaled = copy.copy(self)
        scaled.threat = make_threat_model(self.norm, eps)
        scaled.eps = scaled.threat.eps
        if self.eps > 0:
            scaled.step_size = self.step_size * scaled.eps / self.eps
        elif scaled.eps > 0:
            scaled.step_size = 2.5 * scaled.eps / max(self.steps, 1)
        return scaled

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """The adversarial example for this attack's loss at labels ``y``; see :meth:`perturb`."""
        return self.perturb(model, x, y)

    def perturb(self, model: nn.Module, x: Tensor, target: Tensor, loss_fn: LossFn | None = None) -> Tensor:
        """Maximise ``loss_fn(model(x'), target)`` over x' in the threat model around ``x``.

        Args:
            model: any classifier taking images in [0, 1].
            x: (B, C, H, W) clean inputs in [0, 1].
            target: what ``loss_fn`` compares the logits with (labels for cross-entropy,
                clean probabilities for TRADES' KL, ...).
            loss_fn: per-example loss to maximise; None: the attack's own ``loss``.

        Returns:
            (B, C, H, W) adversarial inputs, detached, inside the ε-ball and [0, 1].
        """
        loss_fn = LOSS_FUNCTIONS[self.loss] if loss_fn is None else loss_fn
        if self.eps == 0.0 or (self.steps == 0 and not self.random_start):
            return x.detach().clone()
        with torch.inference_mode(False), torch.enable_grad(), module_mode(model, self.model_mode):
            x = _normal_tensor(x).detach()
            target = _normal_tensor(target).detach()
            ids = content_ids(x).tolist() if self.seed is not None and self.random_start else None
            best_x: Tensor | None = None
            best_loss: Tensor | None = None
            for restart in range(self.restarts):
                x_adv = self._ascend(model, x, target, loss_fn, self._start(x, ids, restart))
                if self.restarts == 1:
                    return x_adv
                with torch.no_grad():
                    loss = loss_fn(model(x_adv), target).float()
                if best_x is None or best_loss is None:
                    best_x, best_loss = x_adv, loss
                    continue
                better = loss > best_loss  # (B,)
                best_loss = torch.where(better, loss, best_loss)
                best_x = torch.where(better.view(-1, *([1] * (x.dim() - 1))), x_adv, best_x)
            assert best_x is not None
            return best_x

    def initial_point(self, x: Tensor, restart: int = 0) -> Tensor:
        """Where restart ``restart`` starts for clean inputs ``x`` (B, C, H, W), detached.

        x itself without ``random_start``; with it, a uniform point of the threat model drawn per
        example from (seed, the example's pixels, the restart) when ``seed`` is set (the same
        image gets the same start in any batch position), else from the global RNG. Searches
        that reuse this attack's settings (:func:`losses.input_gradients.maximise_in_ball`)
        start where PGD would.
        """
        x = _normal_tensor(x).detach()
        ids = content_ids(x).tolist() if self.seed is not None and self.random_start else None
        return self._start(x, ids, restart)

    def _start(self, x: Tensor, ids: list[int] | None, restart: int) -> Tensor:
        """The starting point: x, a global-RNG draw, or per-example seeded draws."""
        if not self.random_start:
            return x.clone()
        if ids is None:
            return self.threat.random_init(x, clip=self.clip_start)
        generator = torch.Generator(device=x.device)
        starts = []
        for i, example_id in enumerate(ids):
            generator.manual_seed(example_seed(int(self.seed or 0), _PGD_STREAM, example_id, restart))
            starts.append(self.threat.random_init(x[i : i + 1], generator, clip=self.clip_start))
        return torch.cat(starts)

    def _ascend(self, model: nn.Module, x: Tensor, target: Tensor, loss_fn: LossFn, x_adv: Tensor) -> Tensor:
        """K projected ascent steps from the start ``x_adv`` (:func:`attacks.ascent.projected_ascent`)."""
        if self.early_stop and (target.dim() != 1 or target.is_floating_point()):
            raise ValueError("early_stop needs class labels as the target (it stops the examples the model misclassifies)")

        def attack_loss(x_t: Tensor, rows: Tensor | None) -> Tensor | tuple[Tensor, Tensor]:
            logits = model(x_t)
            loss = loss_fn(logits, target)  # (B,)
            if self.early_stop:  # only the examples still classified correctly at x_t move
                return loss, logits.detach().argmax(dim=1) == target
            return loss

        return projected_ascent(attack_loss, x, x_adv, self.threat, self.step_size, self.steps)
