"""Weighted sums of objectives: PGD-AT + attribution stability is a config, not a class.

    L = Σ_p w_p · L_p(model, x, y)

Every part receives the same :class:`StepContext`, created once per step, so work that two
parts need is done once: the adversarial example of an attack (keyed by the attack's repr, see
:func:`losses.adversarial_example`) and the forward at it (PGD-AT's cross-entropy and attribution
stability's saliency come from one forward), the clean forward with the input requiring grad
(ERM's logits and an input-gradient penalty's gradient come from one forward).

Logging: each part's own (unweighted) loss is logged as ``<part>`` and each of its named parts
as ``<part>/<key>``; the LightningModule adds the ``train/`` prefix and logs the weighted total
as ``train/loss``. With PGD-AT and attribution stability: ``train/pgd_at``,
``train/pgd_at/ce_adv``, ``train/attribution_stability``, ``train/attribution_stability/penalty``,
``train/attribution_stability/cosine``. A part's name is its ``name`` if given, else its
class's ``log_name`` (``erm``, ``pgd_at``, ``trades``, ``fast_at``, ``saliency_guided``,
``input_gradient``, ``attribution_stability``, ``curvature``, ``ig_norm``), else the class name
in snake case. The logits of the sum are those of the first part that returns logits, and
likewise its adversarial logits.

YAML::

    objective:
      class_path: losses.WeightedSum
      init_args:
        parts:
          - objective: {class_path: losses.PGDAdversarialTraining, init_args: {...}}
            weight: 1.0
          - objective: {class_path: losses.AttributionStability, init_args: {...}}
            weight: 0.5
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from losses.base import Objective, ObjectiveOutput, StepContext


@dataclass
class Part:
    """One term of a :class:`WeightedSum`.

    Attributes:
        objective: any objective (a training loss or a regulariser).
        weight: its weight w ≥ 0 in the sum.
        name: its log name; default: the objective's ``log_name``.
    """

    objective: Objective
    weight: float = 1.0
    name: str | None = None


def default_log_name(objective: nn.Module) -> str:
    """The objective's ``log_name``, else its class name in snake case."""
    name = getattr(objective, "log_name", None)
    if isinstance(name, str) and name:
        return name
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(objective).__name__).lower()


class WeightedSum(Objective):
    """Σ_p w_p · L_p with one shared :class:`StepContext` per step.

    Args:
        parts: the terms, each an objective with a weight (and optionally a name); at least
            one, with distinct names.
    """

    log_name = "weighted_sum"

    def __init__(self, parts: Sequence[Part]) -> None:
        super().__init__()
        parts = list(parts)
        if not parts:
            raise ValueError("parts must hold at least one objective, got an empty list")
        names: list[str] = []
        for index, part in enumerate(parts):
            if not isinstance(part, Part):
                raise ValueError(f"parts must be Part(objective, weight, name) entries, got {part!r} at index {index}")
            if not isinstance(part.objective, nn.Module):
                raise ValueError(f"parts[{index}].objective must be an objective module, got {part.objective!r}")
            if not part.weight >= 0:
                raise ValueError(f"parts[{index}].weight must be >= 0, got {part.weight}")
            names.append(part.name or default_log_name(part.objective))
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"parts must have distinct names, got {duplicates} more than once; set `name` on one of them"
            )
        self.names = names
        self.weights = [float(part.weight) for part in parts]
        self.parts = nn.ModuleList(part.objective for part in parts)

    @property
    def stop_requested(self) -> str | None:
        """The first part's request to end training, if any part makes one."""
        for name, part in zip(self.names, self.parts):
            reason = getattr(part, "stop_requested", None)
            if reason:
                return f"{name}: {reason}"
        return None

    def prepare(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext) -> None:
        for part in self.parts:
            part.prepare(model, x, y, context)

    def forward(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext | None = None) -> ObjectiveOutput:
        context = StepContext() if context is None else context
        total: Tensor | None = None
        logs: dict[str, Tensor] = {}
        logits: Tensor | None = None
        logits_adv: Tensor | None = None
        for name, weight, part in zip(self.names, self.weights, self.parts):
            out = part(model, x, y, context)
            total = weight * out.loss if total is None else total + weight * out.loss
            logs[name] = out.loss.detach()
            logs.update({f"{name}/{key}": value for key, value in out.logs.items()})
            if logits is None and out.logits is not None:
                logits = out.logits
            if logits_adv is None and out.logits_adv is not None:
                logits_adv = out.logits_adv
        assert total is not None
        return ObjectiveOutput(total, logs, logits, logits_adv)
