"""Logger arguments that fail only when the logger first writes, after training has started.

W&B checks a run id or project name when the run starts (``Run ID cannot contain the
characters ...``): in a fit, that is inside ``trainer.fit``. An empty W&B project silently
files the run under Lightning's default project ``lightning_logs``. ``CSVLogger`` with
``flush_logs_every_n_steps: 0`` divides by zero at the first logged step. A ``save_dir`` inside
a file or on a read-only disk fails at the first write. :func:`check_loggers` refuses all of
them before any work, W&B's names through W&B's own validation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger

from preflight.errors import ConfigError
from preflight.paths import check_output_folder


def logger_nodes(trainer_config: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """``(configuration path, {class_path, init_args})`` of each configured logger."""
    node = trainer_config.get("logger")
    if isinstance(node, list):
        return [(f"trainer.logger[{i}]", n) for i, n in enumerate(node) if isinstance(n, Mapping)]
    return [("trainer.logger", node)] if isinstance(node, Mapping) else []


def _check_wandb_names(field: str, init_args: Mapping[str, Any]) -> None:
    import wandb

    if init_args.get("project") == "":
        raise ConfigError(f"{field}.init_args.project", "must be a W&B project name or null, got ''")
    checks = {"project": "project"}
    for key in ("id", "version"):
        if init_args.get(key) is not None:
            checks[key] = "run_id"
    for key, setting in checks.items():
        value = init_args.get(key)
        if value is None:
            continue
        try:
            wandb.Settings(**{setting: value})
        except Exception as error:  # noqa: BLE001 - W&B raises UsageError or a validation error
            reason = str(error).splitlines()[0]
            raise ConfigError(f"{field}.init_args.{key}", f"W&B refuses {value!r}: {reason}") from error


def check_loggers(loggers: Sequence[Logger], nodes: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    """Check each logger's arguments (see the module doc).

    Args:
        loggers: the trainer's loggers, in configuration order.
        nodes: their configuration nodes with paths (:func:`logger_nodes`).

    Raises:
        ConfigError: naming ``trainer.logger.init_args.<argument>``.
    """
    for logger, (field, node) in zip(loggers, nodes):
        init_args = node.get("init_args") or {}
        check_output_folder(logger.save_dir, f"{field}.init_args.save_dir")
        if isinstance(logger, WandbLogger):
            _check_wandb_names(field, init_args)
        if isinstance(logger, CSVLogger):
            flush = init_args.get("flush_logs_every_n_steps", 100)
            if not isinstance(flush, int) or flush < 1:
                raise ConfigError(f"{field}.init_args.flush_logs_every_n_steps", f"must be an int >= 1, got {flush!r}")
