"""Weighted sums of objectives: PGD-AT + attribution stability is a config, not a class.

    L = Σ_p w_p · L_p(model, x, y)

Every part receives the same :class:`StepContext`, created once per step, so work that two
parts need is done once: the clean forward with the input requiring grad (ERM's logits and an
input-gradient penalty's gradient come from one forward) and, for parts that *declare* it, the
adversarial example of one attack and the forward at it (PGD-AT's cross-entropy and attribution
stability's saliency at one PGD example).

Sharing an attack is declared, never inferred: the sum holds the attack once
(``shared_attack``) and each part that should use it says ``share_attack: true``; those parts'
objectives get that one attack object, and its example is computed once per step
(:func:`losses.base.attack_key` keys it by the object). Two parts whose attacks are merely
written alike each run their own (a warning points at the declaration). Sharing parts must ramp ε
alike (equal ``eps_warmup_steps``), or their attacks would differ from the first step.

Each part has one weight, ``weight`` (λ of a regulariser).

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
        shared_attack:                 # optional: one attack, run once per step
          class_path: attacks.PGD
          init_args: {eps: 0.1, step_size: 0.025, steps: 7}
        parts:
          - objective: {class_path: losses.PGDAdversarialTraining}
            share_attack: true
          - objective:
              class_path: losses.AttributionStability
              init_args: {perturbation: ce_adversarial}
            weight: 0.5
            share_attack: true
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from attacks import PGD
from losses.base import Objective, ObjectiveOutput, StepContext


@dataclass
class Part:
    """One term of a :class:`WeightedSum`.

    Attributes:
        objective: any objective (a training loss or a regulariser).
        weight: its weight w ≥ 0 in the sum.
        name: its log name; default: the objective's ``log_name``.
        share_attack: use the sum's ``shared_attack`` (the objective's own ``attack`` is
            replaced by it), so every part that declares it trains on one example per step.
    """

    objective: Objective
    weight: float = 1.0
    name: str | None = None
    share_attack: bool = False


def _share_attack(parts: list[Part], shared_attack: PGD | None) -> None:
    """Give ``shared_attack`` to the parts that declare it, after checking the declaration."""
    sharing = [i for i, part in enumerate(parts) if part.share_attack]
    if shared_attack is not None and not sharing:
        raise ValueError("shared_attack is used by no part: set `share_attack: true` on the parts that should use it")
    warmups = set()
    for i in sharing:
        if shared_attack is None:
            raise ValueError(f"parts[{i}].share_attack needs the attack to share: set `shared_attack` on the sum")
        objective = parts[i].objective
        if not hasattr(objective, "attack"):
            raise ValueError(
                f"parts[{i}].share_attack: {type(objective).__name__} has no attack to share; remove share_attack"
            )
        warmup = getattr(objective, "warmup", None)
        warmups.add(getattr(warmup, "warmup_steps", 0))
        if len(warmups) > 1:
            raise ValueError(
                f"parts[{i}].objective.init_args.eps_warmup_steps must equal that of the other parts with "
                f"share_attack (their ε ramps would give different attacks), got {getattr(warmup, 'warmup_steps', 0)}"
            )
        objective.attack = shared_attack
    own = [(i, repr(p.objective.attack)) for i, p in enumerate(parts) if not p.share_attack and hasattr(p.objective, "attack")]
    for a, (i, first) in enumerate(own):
        for j, other in own[a + 1 :]:
            if first == other and parts[i].objective.attack is not parts[j].objective.attack:
                warnings.warn(
                    f"parts[{i}] and parts[{j}] have equal attacks and each runs its own; to attack once per step, "
                    "declare the attack once as the sum's `shared_attack` and set `share_attack: true` on both",
                    stacklevel=3,
                )


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
        shared_attack: the attack of the parts that set ``share_attack`` (at least one must).
    """

    log_name = "weighted_sum"

    def __init__(self, parts: Sequence[Part], shared_attack: PGD | None = None) -> None:
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
        self.shared_attack = shared_attack
        _share_attack(parts, shared_attack)
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
