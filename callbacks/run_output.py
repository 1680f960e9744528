"""Where monitoring callbacks put what they measure: the run's loggers, and files beside them.

Scalars go to every logger of the trainer (W&B, CSV, TensorBoard, ...) at the trainer's
global step. Rich results (images, tables) go to W&B as ``wandb.Image`` and ``wandb.Table``
objects, logged in the same history row as the scalars; every other logger gets them as files
(PNG, CSV) in its own log directory. Everything here is called on rank zero only.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytorch_lightning import Trainer
from pytorch_lightning.loggers import Logger, WandbLogger


def wandb_loggers(trainer: Trainer) -> list[WandbLogger]:
    """The trainer's W&B loggers."""
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]


def file_directories(trainer: Trainer) -> list[Path]:
    """The log directories of the trainer's other loggers (CSV, TensorBoard, ...), where rich
    results are written as files."""
    directories: list[Path] = []
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            continue
        directory = getattr(logger, "log_dir", None) or logger.save_dir
        if directory is not None and Path(directory) not in directories:
            directories.append(Path(directory))
    return directories


def log_to_run(
    trainer: Trainer, scalars: Mapping[str, float], wandb_extras: Mapping[str, Any] | None = None
) -> None:
    """Log ``scalars`` to every logger at the trainer's global step; ``wandb_extras`` (images,
    tables) go to W&B loggers in the same history row."""
    step = trainer.global_step
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_metrics({**scalars, **(wandb_extras or {})}, step=step)  # type: ignore[dict-item]
        else:
            _log_scalars(logger, scalars, step)


def _log_scalars(logger: Logger, scalars: Mapping[str, float], step: int) -> None:
    if scalars:
        logger.log_metrics(dict(scalars), step=step)
        logger.save()


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Write a table as CSV (the folder is created)."""
    os.makedirs(path.parent, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
