"""RobustnessEvaluator: accuracy under PGD at several ε, a robustness curve, while training.

On its own seeded probe set (drawn once from the validation split) and its own cadence, it
attacks the model with PGD (Madry, Makelov, Schmidt, Tsipras & Vladu, ICLR 2018) at each ε and
logs the share of examples still classified correctly:

    robust/acc@eps=<ε> = (1/N) Σ_i 1[ f(x_i') = y_i ],   x_i' = PGD_ε(x_i, y_i)

(``robust/acc@eps=0`` is the clean accuracy), and its own cost as ``robust/seconds``.

Choices that keep it cheap and comparable:

- PGD starts from x (no random start), so x' depends on the example alone, never on the batch
  or on the rank: the curve is the same in one process and under DDP, and between runs. The
  step defaults to α = 2.5 ε / steps (Madry et al.).
- The ε are attacked in increasing order, and an example already misclassified at a smaller ε
  counts as misclassified at every larger one (its x' lies in the larger ball too), so only the
  survivors are attacked again. The curve is therefore non-increasing in ε, as the true robust
  accuracy is, and the cost falls as the model breaks.

Accuracies accumulate in sum/count torchmetrics states (:class:`metrics.MeanScore`) that reduce
across processes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from pytorch_lightning import LightningModule, Trainer
from torch import Tensor, nn

from attacks import PGD, Norm
from callbacks.observe import observing
from callbacks.probe import PeriodicProbeCallback, check_int, classifier, model_device
from callbacks.run_output import log_to_run
from metrics import MeanScore


def eps_key(eps: float) -> str:
    """The logged key of the accuracy at ``eps``: ``robust/acc@eps=0.1``."""
    return f"robust/acc@eps={eps:g}"


class RobustnessEvaluator(PeriodicProbeCallback):
    """Accuracy under PGD at several ε on a fixed probe set.

    Args:
        eps: the radii, in [0, 1] pixel units (0: clean accuracy); distinct values.
        steps: PGD steps.
        step_size: PGD step α; None: 2.5 ε / steps for each ε.
        norm: "linf" or "l2".
        probe_size: examples in the probe set, drawn from the validation split.
        probe_seed: seed of the probe draw (its own, apart from ExplanationMonitor's).
        batch_size: examples per attack batch.
        every_n_epochs: run after every this many training epochs.
        every_n_steps: run after every this many optimiser steps (set at most one of the two;
            with neither, every epoch).
    """

    def __init__(
        self,
        eps: Sequence[float] = (0.0, 2 / 255, 4 / 255, 8 / 255),
        steps: int = 10,
        step_size: float | None = None,
        norm: Norm = "linf",
        probe_size: int = 128,
        probe_seed: int = 1,
        batch_size: int = 128,
        every_n_epochs: int | None = None,
        every_n_steps: int | None = None,
    ) -> None:
        super().__init__(probe_size, probe_seed, batch_size, every_n_epochs, every_n_steps)
        if isinstance(eps, (str, bytes)) or not eps:
            raise ValueError(f"eps must be a non-empty list of radii, got {eps!r}")
        for value in eps:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"eps must hold numbers >= 0, got {value!r}")
        if len({float(e) for e in eps}) != len(eps):
            raise ValueError(f"eps must hold distinct radii, got {list(eps)}")
        check_int("steps", steps, 1)
        if step_size is not None and not (isinstance(step_size, (int, float)) and step_size > 0):
            raise ValueError(f"step_size must be a number > 0 or None, got {step_size!r}")
        self.eps = sorted(float(e) for e in eps)
        self.steps = steps
        self.step_size = step_size
        self.norm = norm
        self.attacks: dict[float, PGD] = {}
        for radius in self.eps:
            if radius == 0.0:
                continue
            alpha = 2.5 * radius / steps if step_size is None else float(step_size)
            try:  # PGD checks the norm and ε against it (ε <= 1 under L∞)
                self.attacks[radius] = PGD(eps=radius, step_size=alpha, steps=steps, norm=norm, random_start=False)
            except ValueError as error:
                problem = str(error)
            else:
                continue
            raise ValueError(f"eps must hold radii valid for norm={norm!r}: {problem}")
        self.last: dict[str, float] = {}
        self._accuracy = {radius: MeanScore() for radius in self.eps}

    def state_key_fields(self) -> dict[str, Any]:
        return {**super().state_key_fields(), "eps": self.eps, "norm": self.norm}

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """``{robust/acc@eps=ε: accuracy}`` over the whole probe set, from this rank's share (see
        :meth:`use_probe`); a collective call under DDP. ``model`` is left as found."""
        share = self.share(model_device(model))
        accuracy = {radius: metric.to(share.x.device) for radius, metric in self._accuracy.items()}
        with observing(model):
            for start in range(0, len(share), self.batch_size):
                part = share.slice(start, start + self.batch_size)
                for radius, correct in self._curve(model, part.x, part.y).items():
                    accuracy[radius].update(correct.float())
        values = {eps_key(radius): float(metric.compute()) for radius, metric in accuracy.items()}
        for metric in accuracy.values():
            metric.reset()
        return values

    def _curve(self, model: nn.Module, x: Tensor, y: Tensor) -> dict[float, Tensor]:
        """(B,) bool correctness at each ε, attacking only the examples that survived the
        previous (smaller) ε."""
        with torch.no_grad():
            robust = model(x).argmax(dim=1) == y  # (B,)
        curve = {}
        for radius in self.eps:
            if radius > 0.0 and bool(robust.any()):
                alive = robust.nonzero().squeeze(1)  # (A,)
                x_adv = self.attacks[radius](model, x[alive], y[alive])
                with torch.no_grad():
                    still = model(x_adv).argmax(dim=1) == y[alive]
                robust = robust.clone()
                robust[alive] = still
            curve[radius] = robust
        return curve

    def run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        started = time.perf_counter()
        self.last = self.evaluate(classifier(pl_module, trainer))
        if trainer.is_global_zero:
            log_to_run(trainer, {**self.last, "robust/seconds": time.perf_counter() - started})
