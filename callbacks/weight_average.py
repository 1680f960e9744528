"""Weight averaging (EMA or SWA) of the classifier, evaluated, saved and exported in its place.

An exponential moving average of the weights,

    w̄₀ = w₁,    w̄_t = d · w̄_{t−1} + (1 − d) · w_t        (after optimiser step t),

or, with ``decay: null``, their running mean w̄_n = (1/n) Σ w_t (stochastic weight averaging,
Izmailov et al., UAI 2018). Averaged weights make adversarially trained models markedly more
robust at no training cost (Gowal et al. 2020, "Uncovering the Limits of Adversarial Training
against Norm-Bounded Adversarial Examples"; Rebuffi et al. 2021) and damp robust overfitting.

When on, every number and file a user would quote comes from the average:

- validation (``val/acc``, ``val/acc_pgd``), hence the checkpoint kept as best by
  ``val/acc_pgd``: the average is swapped into the model for each validation;
- checkpoints: their ``state_dict`` holds the average (so ``train.py export``,
  ``callbacks.ExportBundle``, ``train.py report`` and ``validate``/``test --ckpt_path`` use it),
  and ``weight_average`` holds the live weights and the count, so ``fit --ckpt_path`` resumes
  both exactly;
- the monitoring callbacks (:class:`ExplanationMonitor`, :class:`RobustnessEvaluator`,
  :class:`SanityCheck`) observe the average (``callbacks.probe.classifier``);
- after ``fit`` the model holds the average.

BatchNorm: the running statistics are averaged with the same weights as the parameters, as
timm's ``ModelEmaV3`` and Lightning's ``use_buffers=True`` do; integer buffers
(``num_batches_tracked``) follow the live model. SWA's usual alternative, recomputing the
statistics with a forward pass over clean training images (``torch.optim.swa_utils.update_bn``),
is not used: an adversarially trained model's statistics come from the attack's inputs, and
clean-image statistics would describe another input distribution.

Why not Lightning 2.6's ``WeightAveraging``/``EMAWeightAveraging``: it averages every parameter
and buffer of the whole LightningModule, the objective's integer step counters included (an
average copied into a ``long`` truncates, and at the end of fit those values are written back
into the objective); it copies the module in ``setup``, before Lightning moves it to the GPU, so
the average lives on the CPU unless a device is given (a device-to-host copy of every weight at
every step); and the monitoring callbacks, which run after validation, would see the live
weights. This callback averages only the classifier (``pl_module.model``), keeps it on the
model's device, and is found by the monitoring callbacks.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor, nn

from callbacks.probe import check_int, classifier

CHECKPOINT_ENTRY = "weight_average"


def _tensors(model: nn.Module) -> dict[str, Tensor]:
    """Parameters and buffers by name (the keys of ``state_dict``, in its order)."""
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


class WeightAverage(Callback):
    """Keep an EMA (or SWA) of the classifier's weights and use it for evaluation and export.

    Args:
        decay: d of the exponential moving average, in [0, 1); null for the equal-weight running
            mean (SWA). Per averaging step: with ``every_n_steps: 1``, d = 0.999 averages over
            about the last 1 000 optimiser steps.
        start_step: optimiser steps taken before the first update (the average starts as a copy
            of the weights after that step).
        every_n_steps: update after every this many optimiser steps.
    """

    def __init__(self, decay: float | None = 0.999, start_step: int = 0, every_n_steps: int = 1) -> None:
        if decay is not None and not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1) or null (equal-weight average, SWA), got {decay}")
        check_int("start_step", start_step, 0)
        check_int("every_n_steps", every_n_steps, 1)
        self.decay = decay
        self.start_step = start_step
        self.every_n_steps = every_n_steps
        self.average: nn.Module | None = None
        self.count = 0  # updates averaged so far
        self._last_update_step = -1
        self._swapped = False

    # -- lifecycle -------------------------------------------------------------------------------

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != TrainerFn.FITTING.value:
            return
        # Made now so that a resumed fit can load it; moved to the model's device at fit start.
        self.average = copy.deepcopy(classifier(pl_module)).requires_grad_(False)
        self.count, self._last_update_step, self._swapped = 0, -1, False

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.average is not None:
            self.average.to(pl_module.device)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._swapped:  # an exception during validation: give the model its own weights back
            self._swap(pl_module)

    def averaged_classifier(self, trainer: Trainer) -> nn.Module | None:
        """The averaged classifier while fitting, once it has been updated; else None (and
        evaluation uses the live weights: before ``start_step`` there is no average yet)."""
        if trainer.state.fn != TrainerFn.FITTING or self.count == 0:
            return None
        return self.average

    # -- averaging -------------------------------------------------------------------------------

    def due(self, step_index: int) -> bool:
        """Whether the average is updated after the optimiser step of zero-based index ``step_index``."""
        return step_index >= self.start_step and (step_index - self.start_step) % self.every_n_steps == 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold ``model``'s current weights into the average."""
        assert self.average is not None
        averaged, live = _tensors(self.average), _tensors(model)
        pairs = [(averaged[name], value.detach()) for name, value in live.items()]
        if self.count == 0:
            for avg, value in pairs:
                avg.copy_(value)
        else:
            floats = [(a, v) for a, v in pairs if a.is_floating_point()]
            weight = 1.0 - self.decay if self.decay is not None else 1.0 / (self.count + 1)
            torch._foreach_lerp_([a for a, _ in floats], [v for _, v in floats], weight)
            for avg, value in pairs:
                if not avg.is_floating_point():
                    avg.copy_(value)
        self.count += 1

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # global_step counts optimiser steps: with gradient accumulation it stays put for several
        # batches, and one update is due per step.
        step_index = trainer.global_step - 1
        if step_index > self._last_update_step and self.due(step_index):
            self.update(classifier(pl_module))
            self._last_update_step = step_index

    # -- evaluation on the average ---------------------------------------------------------------

    @torch.no_grad()
    def _swap(self, pl_module: LightningModule) -> None:
        assert self.average is not None
        averaged, live = _tensors(self.average), _tensors(classifier(pl_module))
        for name, value in live.items():
            held = averaged[name].clone()
            averaged[name].copy_(value)
            value.copy_(held)
        self._swapped = not self._swapped

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.averaged_classifier(trainer) is not None and not self._swapped:
            self._swap(pl_module)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._swapped:
            self._swap(pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.average is None or self.count == 0:
            return
        with torch.no_grad():
            live = _tensors(classifier(pl_module))
            for name, value in _tensors(self.average).items():
                live[name].copy_(value)

    # -- checkpoints -----------------------------------------------------------------------------

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if self.average is None or self.count == 0:
            return  # outside fit, or no average yet: the live weights are what to evaluate
        prefix = "model." if classifier(pl_module) is not pl_module else ""
        state = checkpoint["state_dict"]
        held = {name: value.detach().clone() for name, value in self.average.state_dict().items()}
        live = {}
        for name, value in held.items():
            if self._swapped:  # saved during validation: the module holds the average, we the live weights
                live[name] = value
            else:
                live[name] = state[prefix + name]
                state[prefix + name] = value
        checkpoint[CHECKPOINT_ENTRY] = {
            "live_state_dict": live,
            "count": self.count,
            "decay": self.decay,
            "start_step": self.start_step,
            "every_n_steps": self.every_n_steps,
        }

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        entry = checkpoint.get(CHECKPOINT_ENTRY)
        if self.average is None or entry is None:
            return  # not fitting (the state_dict, the average, is what to evaluate), or no average saved
        # Lightning has loaded the state_dict (the average) into the module: move it into the
        # average, and put the live weights back into the module.
        model = classifier(pl_module)
        self.average.load_state_dict(model.state_dict())
        model.load_state_dict(entry["live_state_dict"])
        self.count = int(entry["count"])

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "last_update_step": self._last_update_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.count = int(state_dict.get("count", self.count))
        self._last_update_step = int(state_dict.get("last_update_step", -1))
