"""What a robustlens checkpoint records about its run, beyond Lightning's own entries.

Lightning checkpoints hold the weights, the optimiser and loop states and the model's
hyperparameters, but not the resolved recipe, the dataset's class names or the metrics the run
had reached. :func:`run_metadata` gathers those into plain Python values (strings, numbers,
lists, dicts), so the checkpoint still loads with ``torch.load(weights_only=True)``; the CLI's
config callback stores it under ``checkpoint["robustlens"]`` at every save. Export bundles
(:mod:`export`) and analysis read it back; a resumed fit reads the recipe (to refuse another
one) and the loggers' versions (to continue the same W&B run and run folder; :mod:`preflight.resume`).
"""

from __future__ import annotations

from typing import Any

from pytorch_lightning import Trainer
from pytorch_lightning.loggers import WandbLogger

from datamodules.base import ImageDataModule

CHECKPOINT_KEY = "robustlens"
METADATA_VERSION = 1


def data_facts(datamodule: object) -> dict[str, Any] | None:
    """Name, class path, classes, input shape and normalisation of an :class:`ImageDataModule`."""
    if not isinstance(datamodule, ImageDataModule):
        return None
    cls = type(datamodule)
    return {
        "name": cls.__name__,
        "class_path": f"{cls.__module__}.{cls.__qualname__}",
        "num_classes": int(datamodule.num_classes),
        "class_names": [str(name) for name in datamodule.class_names],
        "input_shape": [int(v) for v in datamodule.input_shape],
        "value_range": [0.0, 1.0],
        "mean": [float(v) for v in datamodule.mean],
        "std": [float(v) for v in datamodule.std],
    }


def scalar_metrics(trainer: Trainer) -> dict[str, float]:
    """Every scalar of ``trainer.callback_metrics`` (the last logged value of each key)."""
    metrics = {}
    for name, value in trainer.callback_metrics.items():
        if hasattr(value, "numel") and value.numel() == 1:
            metrics[name] = float(value.detach().float().cpu())
        elif isinstance(value, (int, float)):
            metrics[name] = float(value)
    return dict(sorted(metrics.items()))


def run_metadata(trainer: Trainer, config_yaml: str | None) -> dict[str, Any]:
    """The ``checkpoint["robustlens"]`` entry: config, data facts, metrics and the loggers' runs
    (``loggers``: class path and version of each, the W&B run id for a WandbLogger) at this save.

    Args:
        trainer: the trainer that is saving.
        config_yaml: the resolved configuration as YAML text, or None outside the CLI.
    """
    wandb_run_id = None
    loggers = []
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            wandb_run_id = str(logger.version) if logger.version is not None else None
        cls = type(logger)
        version = logger.version
        loggers.append(
            {
                "class_path": f"{cls.__module__}.{cls.__qualname__}",
                "version": version if isinstance(version, (int, str)) or version is None else str(version),
            }
        )
    return {
        "version": METADATA_VERSION,
        "config": config_yaml,
        "data": data_facts(trainer.datamodule),
        "metrics": scalar_metrics(trainer),
        "epoch": int(trainer.current_epoch),
        "global_step": int(trainer.global_step),
        "wandb_run_id": wandb_run_id,
        "loggers": loggers,
    }
