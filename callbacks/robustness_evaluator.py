"""RobustnessEvaluator: accuracy under a list of attacks at several ε, while training or at its end.

On its own seeded probe set (drawn once from the validation split) and its own cadence, it runs
every attack at every radius (:func:`evaluation.robust_correctness`: the same algorithm as
``train.py report``) and logs, with ``prefix`` "robust":

- ``robust/<attack>/acc@eps=<ε>``: the share of probe examples classified correctly and not
  broken by that attack at ε (``pgd10-ce``, ``pgd40-margin``, ``autoattack-fast``,
  ``autoattack``; see each attack's ``name``);
- ``robust/acc@eps=<ε>``: the per-example worst case over every attack and every radius
  ε' ≤ ε: the tightest upper bound on robust accuracy at ε this evaluator found (at ε = 0, the
  clean accuracy);
- ``robust/seconds``: its own wall time.

Which figure means what: a cross-entropy PGD figure is a cheap upper bound that overstates
robustness where the softmax saturates or gradients are masked; ``autoattack`` (standard) is the
figure to quote, ``autoattack-fast`` an upper bound on it that is close on models without
gradient masking.

Choices:

- Attacks are given as templates (``class_path`` objects) and run at every ε of ``eps``: their
  own ``eps`` is replaced and a PGD's step size scaled in proportion (α/ε kept). Attacks must
  be deterministic per example (PGD seeded or without random start; AutoAttack seeds per
  example), so the values are the same in one process and under DDP, and between runs.
- ``at_fit_end`` runs it once more on the final weights when training ends; with no period
  set, only then (an AutoAttack figure at the end of a fit, too costly for every epoch).

Counts accumulate in sum-reduced torchmetrics states (:class:`evaluation.RobustCounts`): every
probe example is counted once, on the process that holds it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from pytorch_lightning import LightningModule, Trainer
from torch import nn

from attacks import PGD, EvaluationAttack
from callbacks.observe import observing
from callbacks.probe import PeriodicProbeCallback, classifier, model_device
from callbacks.run_output import log_to_run
from datamodules import ProbeBatch
from evaluation import RobustAccuracy, RobustCounts, check_attacks, check_radii, robust_correctness

DEFAULT_PREFIX = "robust"


def eps_key(eps: float, attack: str | None = None, prefix: str = DEFAULT_PREFIX) -> str:
    """A logged key: ``robust/acc@eps=0.1`` (the worst case), ``robust/pgd10-ce/acc@eps=0.1``."""
    return f"{prefix}/acc@eps={eps:g}" if attack is None else f"{prefix}/{attack}/acc@eps={eps:g}"


def _default_attacks() -> list[PGD]:
    # PGD-10 on the cross-entropy from x, α = ε/4 = 2.5 ε / 10 (Madry et al.): a cheap monitor.
    return [PGD(eps=8 / 255, step_size=2 / 255, steps=10, random_start=False)]


class RobustnessEvaluator(PeriodicProbeCallback):
    """Accuracy under a list of attacks at several ε on a fixed probe set.

    Args:
        eps: the radii, in [0, 1] pixel units (0: clean accuracy); distinct values.
        attacks: attack templates, e.g. ``attacks.PGD`` (any ``loss``) and ``attacks.AutoAttack``
            (``version: fast`` or ``standard``), each run at every radius; distinct names, one
            norm. None: PGD-10 on the cross-entropy without random start (α = 2.5 ε / 10).
        probe_size: examples in the probe set, drawn from the validation split.
        probe_seed: seed of the probe draw (its own, apart from ExplanationMonitor's).
        batch_size: examples per attack batch.
        every_n_epochs: run after every this many training epochs.
        every_n_steps: run after every this many optimiser steps (set at most one of the two;
            with neither, every epoch, or only at the end of fit with ``at_fit_end``).
        at_fit_end: also run once on the final weights when the fit ends.
        prefix: the first part of the logged keys; two evaluators in one run need two prefixes.
    """

    def __init__(
        self,
        eps: Sequence[float] = (0.0, 2 / 255, 4 / 255, 8 / 255),
        attacks: Sequence[EvaluationAttack] | None = None,
        probe_size: int = 128,
        probe_seed: int = 1,
        batch_size: int = 128,
        every_n_epochs: int | None = None,
        every_n_steps: int | None = None,
        at_fit_end: bool = False,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        if not isinstance(at_fit_end, bool):
            raise ValueError(f"at_fit_end must be true or false, got {at_fit_end!r}")
        periodic = not (at_fit_end and every_n_epochs is None and every_n_steps is None)
        super().__init__(probe_size, probe_seed, batch_size, every_n_epochs, every_n_steps)
        if not isinstance(prefix, str) or not prefix or "/" in prefix or not prefix.strip() == prefix:
            raise ValueError(f"prefix must be a non-empty name without '/' or spaces around it, got {prefix!r}")
        attacks = _default_attacks() if attacks is None else list(attacks)
        self.attacks = check_attacks(attacks, eps)
        self.eps = check_radii(eps, self.attacks[0].norm)
        self.periodic = periodic
        self.at_fit_end = at_fit_end
        self.prefix = prefix
        self.last: dict[str, float] = {}
        self.accuracy: RobustAccuracy | None = None

    @property
    def names(self) -> list[str]:
        return [attack.name for attack in self.attacks]

    def check_num_classes(self, num_classes: int) -> None:
        """Raise a ValueError naming ``attacks`` when an attack cannot run on ``num_classes`` classes."""
        for i, attack in enumerate(self.attacks):
            try:
                attack.check_num_classes(num_classes)
            except ValueError as error:
                problem = str(error)
            else:
                continue
            raise ValueError(f"attacks[{i}] ({attack.name}) cannot run on this data: {problem}")

    def draw_probe(self, datamodule: Any, world_size: int = 1) -> ProbeBatch:
        if datamodule is not None and isinstance(getattr(datamodule, "num_classes", None), int):
            self.check_num_classes(datamodule.num_classes)
        return super().draw_probe(datamodule, world_size)

    def state_key_fields(self) -> dict[str, Any]:
        return {**super().state_key_fields(), "eps": self.eps, "attacks": self.names, "prefix": self.prefix}

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """The logged values over the whole probe set, from this rank's share (see
        :meth:`use_probe`); a collective call under DDP. ``model`` is left as found."""
        share = self.share(model_device(model))
        with observing(model):  # (also outside inference mode: the states are updated in place)
            # Fresh states for each evaluation: tensors made in __init__ would be shared in memory
            # between the processes ddp_spawn starts from one pickled callback.
            counts = RobustCounts(len(self.attacks), len(self.eps)).to(share.x.device)
            counts.update(robust_correctness(model, share.x, share.y, self.attacks, self.eps, self.batch_size))
            reduced = counts.compute()
            with counts.sync_context():  # the clean count and the total, reduced like the counts
                clean, total = int(counts.clean), int(counts.total)
        self.accuracy = RobustAccuracy.from_counts(self.eps, self.names, reduced.cpu(), clean, total)
        return self.values(self.accuracy)

    def values(self, accuracy: RobustAccuracy) -> dict[str, float]:
        """``accuracy`` as logged keys."""
        values = {eps_key(e, prefix=self.prefix): a for e, a in zip(accuracy.eps, accuracy.worst_up_to_eps)}
        for name, curve in accuracy.by_attack.items():
            values.update({eps_key(e, name, self.prefix): a for e, a in zip(accuracy.eps, curve)})
        return values

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.periodic:
            super().on_train_epoch_end(trainer, pl_module)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.periodic:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Not again when the last periodic run measured these very weights.
        if not self.at_fit_end or self.skip(trainer) or trainer.global_step == self.last_step:
            return
        self._run_now(trainer, pl_module, trainer.current_epoch)

    def summary(self) -> str | None:
        """One line on the last evaluation (what ``train.py`` prints when a fit ends), or None."""
        if self.accuracy is None:
            return None
        radii = [(i, e) for i, e in enumerate(self.accuracy.eps) if e > 0]
        parts = [
            f"{name} {', '.join(f'{curve[i]:.3f} at ε={e:g}' for i, e in radii)}"
            for name, curve in self.accuracy.by_attack.items()
        ]
        return f"{'; '.join(parts)} (clean {self.accuracy.clean:.3f}; {self.accuracy.examples} validation images)"

    def run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        started = time.perf_counter()
        self.last = self.evaluate(classifier(pl_module, trainer))
        if trainer.is_global_zero:
            log_to_run(trainer, {**self.last, f"{self.prefix}/seconds": time.perf_counter() - started})
