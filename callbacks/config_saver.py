"""Record the resolved configuration with the run it produced.

LightningCLI's own ``SaveConfigCallback`` writes ``config.yaml`` to ``trainer.log_dir``, which
for the W&B logger is the shared save directory, so a second run refuses to start. This one
writes into the run's own folder (the W&B run's ``files/`` folder, or the CSV/TensorBoard
version folder) and logs the resolved config through every logger, so it appears as the W&B
run's config. It runs on rank zero only and needs no collective call. It also stores the
resolved config, the dataset's facts and the metrics so far in every checkpoint
(:mod:`callbacks.checkpoint_metadata`), so that a checkpoint can be exported on its own.
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.cli import SaveConfigCallback
from pytorch_lightning.loggers import WandbLogger

from callbacks.checkpoint_metadata import CHECKPOINT_KEY, run_metadata


def run_directory(trainer: Trainer) -> str | None:
    """The folder of this run's files: the W&B run's ``files/`` folder, else ``trainer.log_dir``.

    Call it on every rank: ``trainer.log_dir`` broadcasts from rank zero. Ranks other than zero
    get None for a W&B run (only rank zero has one).
    """
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            return str(logger.experiment.dir) if trainer.is_global_zero else None
    return trainer.log_dir


class SaveConfigToRun(SaveConfigCallback):
    """Save ``config.yaml`` in the run's folder and log the resolved config to the loggers."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        directory = run_directory(trainer)  # on every rank: it may broadcast
        if trainer.is_global_zero:
            if directory is not None:
                os.makedirs(directory, exist_ok=True)
                path = os.path.join(directory, self.config_filename)
                self.parser.save(self.config, path, overwrite=True, multifile=False)
            config = self._resolved_config()
            for logger in trainer.loggers:
                logger.log_hyperparams(config)
        self.already_saved = True

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = run_metadata(trainer, yaml.safe_dump(self._resolved_config(), sort_keys=False))

    def _resolved_config(self) -> dict[str, Any]:
        config: dict[str, Any] = yaml.safe_load(self.parser.dump(self.config))
        config.pop("subcommand", None)
        config.pop("config", None)
        return config
