"""Lightning's ModelCheckpoint with a ``last.ckpt`` that really is the last state, and a best
checkpoint that stays the best of the whole run across resumes.

From Lightning 2.5 on, ``ModelCheckpoint(monitor=..., save_last=True)`` writes ``last.ckpt``
only at the steps where it also saved a top-k checkpoint: after an epoch that does not improve
the monitored metric, ``last.ckpt`` still holds an older state, and a resume from it silently
repeats (or loses) epochs. This subclass refreshes ``last.ckpt`` at every save point
(validation end, or training-epoch end when it saves there), whatever the monitored metric did.
"""

from __future__ import annotations

import os
from typing import Any

from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.callbacks import ModelCheckpoint as LightningModelCheckpoint


class ModelCheckpoint(LightningModelCheckpoint):
    """``pytorch_lightning.callbacks.ModelCheckpoint`` whose ``save_last`` keeps ``last.ckpt``
    at the latest epoch (or validation) even when the monitored metric did not improve, and
    whose resumed state is kept whenever the checkpoint folder is the same folder.

    Takes the same arguments as Lightning's class.
    """

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def _refresh_last(self, trainer: Trainer) -> None:
        if not self.save_last or self._should_skip_saving_checkpoint(trainer):
            return
        if self._last_global_step_saved == trainer.global_step and self.last_model_path:
            return  # Lightning saved last.ckpt at this step already
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        recorded = state_dict.get("dirpath")
        if recorded and self.dirpath and os.path.realpath(recorded) == os.path.realpath(self.dirpath):
            state_dict = {**state_dict, "dirpath": self.dirpath}
        super().load_state_dict(state_dict)
