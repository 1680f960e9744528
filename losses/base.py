"""The objective interface: what every training loss in robustlens looks like.

An objective is a small ``nn.Module`` with one idea. It is called as
``objective(model, x, y, context)`` and returns an :class:`ObjectiveOutput`: the scalar loss to
minimise, a dict of named parts to log (``train/<name>``), and the logits that the loss trained
on (clean ones for ERM, adversarial ones for PGD-AT), from which the LightningModule counts
``train/acc``.

An objective never takes the optimiser, never calls ``zero_grad`` or ``backward``, and leaves
the model in the mode it found it. The :class:`StepContext` lets the parts of a composed
objective share work within one training step (one adversarial example for two parts that need
the same one; one clean forward).
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


class ObjectiveOutput(NamedTuple):
    """What an objective returns.

    Attributes:
        loss: scalar tensor to minimise, attached to the graph.
        logs: named scalar parts, detached, logged as ``train/<name>``.
        logits: (B, num_classes) logits of the examples the main term trained on, or None for a
            pure regulariser.
    """

    loss: Tensor
    logs: dict[str, Tensor]
    logits: Tensor | None


class StepContext:
    """Memoises work shared by the parts of an objective within one training step.

    ``context.get(key, compute)`` returns the value computed for ``key`` earlier in the same
    step, or calls ``compute()`` once and keeps it. Keys are hashable descriptions of the work,
    for example ``("adversarial", attack_key)``; a composite objective creates one context per
    step and passes it to every part.
    """

    def __init__(self) -> None:
        self._values: dict[Hashable, Any] = {}
        self.computed: list[Hashable] = []

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        if key not in self._values:
            self._values[key] = compute()
            self.computed.append(key)
        return self._values[key]


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

    def forward(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext | None = None) -> ObjectiveOutput:
        """Loss of ``model`` on the batch (x in [0, 1], y class indices)."""
        raise NotImplementedError
