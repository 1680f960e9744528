"""Every pre-run check of a ``train.py`` subcommand, in one call.

:func:`check_run` is called after the trainer, the model and the datamodule are built and the
data is set up, and before Lightning starts the run: before any W&B run, run folder or checkpoint
exists. Each check raises :class:`~preflight.errors.ConfigError` naming the configuration field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytorch_lightning import Callback, LightningDataModule, LightningModule, Trainer

from preflight.errors import ConfigError
from preflight.loggers import check_loggers, logger_nodes
from preflight.monitors import check_monitors
from preflight.optimization import MAX_SIMULATED_STEPS, check_optimizer, check_schedule
from preflight.paths import check_output_folder
from preflight.trainer import RunLength, check_trainer_values, check_val_check_interval, run_length

OUTPUT_FOLDERS = ("dirpath", "out_dir")  # callback arguments that name a folder the run writes into


def check_run(
    stage: str,
    config: Mapping[str, Any],
    trainer: Trainer,
    model: LightningModule,
    datamodule: LightningDataModule | None,
    callbacks: Sequence[tuple[str, Callback]],
    data_ready: bool = True,
) -> RunLength | None:
    """Check what Lightning, PyTorch and W&B would otherwise check only once the run is under way.

    Args:
        stage: "fit", "validate" or "test".
        config: the subcommand's resolved configuration (plain data: ``trainer``, ``model``, ...).
        trainer: the trainer built from it.
        model: the LightningModule.
        datamodule: the datamodule, or None.
        callbacks: ``(configuration path, callback)`` of the configured callbacks, in order.
        data_ready: whether the datamodule is set up (False while its files still have to be
            downloaded: the checks that need the data's size are skipped).

    Returns:
        The length of the fit (``stage == "fit"`` with the data ready), else None.

    Raises:
        ConfigError: the first problem found, against its field.
    """
    trainer_config = config.get("trainer") or {}
    check_trainer_values(trainer_config)
    check_output_folder(trainer_config.get("default_root_dir"), "trainer.default_root_dir")
    check_loggers(trainer.loggers, logger_nodes(trainer_config))
    for field, callback in callbacks:
        for name in OUTPUT_FOLDERS:
            check_output_folder(getattr(callback, name, None), f"{field}.init_args.{name}")
    if stage != "fit":
        return None
    check_monitors(callbacks, model)
    for field, callback in callbacks:
        check = getattr(callback, "check_monitor", None)
        if callable(check):
            try:
                check(trainer)
            except ValueError as error:
                raise ConfigError(f"{field}.init_args.monitor", str(error)) from error
    length = None
    if data_ready and datamodule is not None:
        try:
            length = run_length(trainer, datamodule)
        except Exception:  # noqa: BLE001 - no length (a datamodule without a training loader): checks that need it are skipped
            length = None
    if length is not None:
        check_val_check_interval(trainer_config, length.batches_per_epoch)
    model_config = config.get("model") or {}
    optimizer_factory = getattr(model, "optimizer_factory", None)
    if callable(optimizer_factory):
        check_optimizer(optimizer_factory, _node(model_config.get("optimizer")))
        interval = str(getattr(model, "scheduler_interval", "epoch"))
        steps = length.scheduler_steps(interval, MAX_SIMULATED_STEPS) if length is not None else 1
        check_schedule(
            optimizer_factory, getattr(model, "lr_scheduler_factory", None), _node(model_config.get("lr_scheduler")),
            steps, interval,
        )  # fmt: skip
    return length


def _node(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) and "class_path" in value else None
