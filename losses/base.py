"""The objective interface: what every training loss in robustlens looks like.

An objective is a small ``nn.Module`` with one idea. It is called as
``objective(model, x, y, context)`` and returns an :class:`ObjectiveOutput`: the scalar loss to
minimise, a dict of named parts to log (``train/<name>``), and the logits that the loss trained
on (clean ones for ERM, adversarial ones for PGD-AT), from which the LightningModule counts
``train/acc``.

An objective never takes the optimiser, never calls ``zero_grad`` or ``backward``, and leaves
the model in the mode it found it. The :class:`StepContext` lets the parts of a composed
objective share work within one training step (one adversarial example for two parts that need
the same one; one clean forward). :meth:`StepContext.branch` and :meth:`Objective.prepare` let
a wrapper evaluate an objective again within the step at other weights (adversarial weight
perturbation, :class:`losses.AWP`) on the same adversarial examples.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn


def upcast(t: Tensor) -> Tensor:
    """``t`` in float32 when it is in a narrower float type (autocast's bfloat16/float16), else as is.

    Losses and reductions run in at least float32 under mixed precision; a float64 model (the
    finite-difference tests) keeps its precision.
    """
    return t.float() if t.is_floating_point() and torch.finfo(t.dtype).bits < 32 else t


FORWARD_KEY = "forward"
"""First element of the :class:`StepContext` keys of model outputs (logits of a forward pass).

They depend on the weights, unlike the inputs of a step (adversarial examples, the ε fraction),
so a :meth:`StepContext.branch` keeps them to itself."""


class ObjectiveOutput(NamedTuple):
    """What an objective returns.

    Attributes:
        loss: scalar tensor to minimise, attached to the graph.
        logs: named scalar parts, detached, logged as ``train/<name>``.
        logits: (B, num_classes) logits of the examples the main term trained on, or None for a
            pure regulariser.
        logits_adv: (B, num_classes) logits of the adversarial examples of the training attack
            when the objective trains on them (PGD-AT, TRADES, MART, fast AT), else None: the
            train robust accuracy (``train/acc_adv``, ``val/robust_gap``).
    """

    loss: Tensor
    logs: dict[str, Tensor]
    logits: Tensor | None
    logits_adv: Tensor | None = None


class StepContext:
    """Memoises work shared by the parts of an objective within one training step.

    ``context.get(key, compute)`` returns the value computed for ``key`` earlier in the same
    step, or calls ``compute()`` once and keeps it. Keys are hashable descriptions of the work,
    for example ``("adversarial", attack_key)``; a composite objective creates one context per
    step and passes it to every part.
    """

    def __init__(self, parent: StepContext | None = None) -> None:
        self._values: dict[Hashable, Any] = {}
        self.computed: list[Hashable] = []
        self._parent = parent

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        if self._parent is not None and not is_forward_key(key):
            return self._parent.get(key, compute)
        if key not in self._values:
            self._values[key] = compute()
            self.computed.append(key)
        return self._values[key]

    def branch(self) -> StepContext:
        """A context for evaluating objectives again within this step, at other weights.

        It shares every input of the step with this context (adversarial examples, ε fractions,
        anything an objective memoises that does not depend on the weights: computed once, by
        whichever context asks first) and keeps model outputs (keys starting with
        :data:`FORWARD_KEY`) to itself, so logits computed at perturbed weights are never
        served to a part evaluated at the weights themselves, nor the reverse.
        """
        return StepContext(parent=self)


def attack_key(attack: object) -> tuple[int, str]:
    """What an attack's example is memoised under within a step: the attack *object* it comes
    from and its settings at this step (its repr, which carries a warm-up's ε).

    Parts share an example only when they hold the same attack object (in YAML: the
    ``shared_attack`` of a :class:`losses.WeightedSum`, see there), never because two attacks
    are written alike.
    """
    return (id(getattr(attack, "declared_as", attack)), repr(attack))


def refuse_penalty_weight(penalty_weight: float | None, objective: str) -> None:
    """Stop with a message naming the new key when a retired ``penalty_weight`` is given.

    A regulariser returns its unweighted penalty R; its λ is the ``weight`` of its part in a
    :class:`losses.WeightedSum` (one weight per part). The old constructor argument is kept only
    so that old YAML and code stop here, before any work, saying what to write instead.
    """
    if penalty_weight is None:
        return
    raise ValueError(
        f"penalty_weight is retired: {objective} returns its unweighted penalty and its λ is the weight "
        f"of its part in losses.WeightedSum; remove penalty_weight and multiply that part's `weight` by "
        f"{penalty_weight} (for a part of weight 1: `weight: {penalty_weight}` beside `objective:`)"
    )


def is_forward_key(key: Hashable) -> bool:
    """Whether ``key`` names a model output (``(FORWARD_KEY, ...)``), which a branch keeps private."""
    return isinstance(key, tuple) and len(key) > 0 and key[0] == FORWARD_KEY


class Objective(nn.Module):
    """Base class of training objectives; subclasses implement :meth:`forward`.

    Attributes:
        log_name: the short name a :class:`losses.WeightedSum` logs this objective's parts
            under (``pgd_at``, ``input_gradient`` ...).
    """

    log_name: ClassVar[str] = ""

    @property
    def stop_requested(self) -> str | None:
        """Why training should end after this step, or None.

        An objective that detects a failure it cannot train through (catastrophic overfitting
        of FGSM training, :class:`losses.FastAdversarialTraining`) returns a reason here; the
        LightningModule then ends the fit after the current step. Objectives stay free of
        Lightning: they ask, the training loop decides.
        """
        return None

    def prepare(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext) -> None:
        """Compute, at the model's current weights, the inputs this objective will train on.

        An objective that trains on perturbed inputs (an adversarial example, a random draw)
        computes them here, memoised in ``context``, so that the ``forward`` calls of the same
        step (and of its :meth:`StepContext.branch` es) find them there instead of computing
        them again. :class:`losses.AWP` calls it on the real model before evaluating the
        objective at other weights, so the attack runs exactly as in an ordinary step
        (BatchNorm statistics included). The default does nothing: such an objective computes
        its inputs inside ``forward``.
        """

    def forward(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext | None = None) -> ObjectiveOutput:
        """Loss of ``model`` on the batch (x in [0, 1], y class indices)."""
        raise NotImplementedError
