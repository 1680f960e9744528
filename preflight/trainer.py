"""Trainer arguments that Lightning accepts when the Trainer is built but fails on (or silently
misreads) once the run has started, and the length of the run in optimiser steps.

Lightning checks most Trainer arguments in ``Trainer.__init__`` (``train.py`` reports those
against their field). These it does not: ``accumulate_grad_batches=0``,
``check_val_every_n_epoch=0`` and ``val_check_interval=0`` divide by zero at the first step,
after the run's folders exist; a ``val_check_interval`` larger than an epoch fails after the
W&B run has started; ``gradient_clip_val < 0`` flips every gradient (``clip_grad_norm_`` scales
by a negative factor) and trains uphill; ``val_check_interval=0.0`` validates after every batch;
a negative ``log_every_n_steps`` logs every step; ``num_sanity_val_steps < -1``,
``min_epochs > max_epochs`` and ``min_steps > max_steps`` are contradictions Lightning settles
without a word.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pytorch_lightning import LightningDataModule, Trainer

from preflight.arguments import refused_arguments
from preflight.errors import ConfigError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_trainer_values(config: Mapping[str, Any]) -> None:
    """Check the Trainer arguments Lightning leaves to the run (see the module doc).

    Args:
        config: the resolved ``trainer`` configuration (unset arguments may be absent).

    Raises:
        ConfigError: naming the field (``trainer.accumulate_grad_batches``) and what it accepts.
    """
    get = config.get
    accumulate = get("accumulate_grad_batches", 1)
    if not _is_int(accumulate) or accumulate < 1:
        raise ConfigError("trainer.accumulate_grad_batches", f"must be an int >= 1, got {accumulate!r}")
    every = get("check_val_every_n_epoch", 1)
    if every is not None and (not _is_int(every) or every < 1):
        raise ConfigError(
            "trainer.check_val_every_n_epoch", f"must be an int >= 1 (or null: validate by val_check_interval only), got {every!r}"
        )
    interval = get("val_check_interval")
    if interval is not None:
        if isinstance(interval, float) and not 0.0 < interval <= 1.0:
            raise ConfigError(
                "trainer.val_check_interval",
                f"must be a fraction of the training epoch in (0, 1] or a number of batches >= 1, got {interval!r}",
            )
        if _is_int(interval) and interval < 1:
            raise ConfigError(
                "trainer.val_check_interval",
                f"must be a number of training batches >= 1 or a fraction of the epoch in (0, 1], got {interval!r}",
            )
    clip = get("gradient_clip_val")
    if clip is not None and not (isinstance(clip, (int, float)) and 0 <= clip < math.inf):
        raise ConfigError(
            "trainer.gradient_clip_val",
            f"must be a finite number >= 0 (0 or null: no clipping), got {clip!r}; a negative value would flip every gradient",
        )
    log_every = get("log_every_n_steps")
    if log_every is not None and (not _is_int(log_every) or log_every < 0):
        raise ConfigError("trainer.log_every_n_steps", f"must be an int >= 0 (0: never), got {log_every!r}")
    sanity = get("num_sanity_val_steps")
    if sanity is not None and (not _is_int(sanity) or sanity < -1):
        raise ConfigError(
            "trainer.num_sanity_val_steps", f"must be an int >= 0, or -1 for the whole validation set, got {sanity!r}"
        )
    for low, high in (("min_epochs", "max_epochs"), ("min_steps", "max_steps")):
        lo, hi = get(low), get(high)
        if _is_int(lo) and _is_int(hi) and hi != -1 and lo > hi:
            raise ConfigError(f"trainer.{low}", f"must be <= {high} ({hi}), got {lo}")


@dataclass
class RunLength:
    """How long a fit runs.

    Attributes:
        batches_per_epoch: training batches per epoch on each process.
        steps_per_epoch: optimiser steps per epoch (batches / accumulate_grad_batches, rounded up).
        optimizer_steps: optimiser steps of the whole run; None when it is unbounded.
        epochs: epochs of the whole run (the last one may be partial); None when unbounded.
    """

    batches_per_epoch: int
    steps_per_epoch: int
    optimizer_steps: int | None
    epochs: int | None

    def scheduler_steps(self, interval: str, unbounded: int) -> int:
        """Scheduler steps the run takes with ``interval`` "step" or "epoch" (``unbounded`` when
        the run has no end)."""
        count = self.optimizer_steps if interval == "step" else self.epochs
        return unbounded if count is None else count


def training_batches(trainer: Trainer, datamodule: LightningDataModule) -> int:
    """Training batches per epoch on each process, after ``limit_train_batches``."""
    loader = datamodule.train_dataloader()
    world = max(int(trainer.world_size), 1)
    batch_size = getattr(loader, "batch_size", None)
    dataset = getattr(loader, "dataset", None)
    if world > 1 and batch_size and dataset is not None and hasattr(dataset, "__len__"):
        batches = math.ceil(math.ceil(len(dataset) / world) / batch_size)
    else:
        batches = len(loader)
    limit = trainer.limit_train_batches
    if isinstance(limit, float):
        batches = int(batches * limit)
    elif limit is not None:
        batches = min(batches, int(limit))
    return batches


def run_length(trainer: Trainer, datamodule: LightningDataModule) -> RunLength:
    """The length of ``trainer.fit`` on ``datamodule`` (Lightning's own resolution of
    ``max_epochs``, ``max_steps`` and ``accumulate_grad_batches``)."""
    batches = training_batches(trainer, datamodule)
    per_epoch = max(math.ceil(batches / max(trainer.accumulate_grad_batches, 1)), 1)
    max_epochs = trainer.fit_loop.max_epochs
    max_steps = trainer.fit_loop.max_steps
    bounds = []
    if max_epochs is not None and max_epochs != -1:
        bounds.append(max_epochs * per_epoch)
    if max_steps is not None and max_steps != -1:
        bounds.append(max_steps)
    steps = min(bounds) if bounds else None
    epochs = None if steps is None else math.ceil(steps / per_epoch)
    return RunLength(batches, per_epoch, steps, epochs)


def check_val_check_interval(config: Mapping[str, Any], batches_per_epoch: int) -> None:
    """An int ``val_check_interval`` must fit in a training epoch (unless validation counts
    batches across epochs, ``check_val_every_n_epoch: null``)."""
    interval = config.get("val_check_interval")
    if _is_int(interval) and config.get("check_val_every_n_epoch", 1) is not None and interval > batches_per_epoch:
        raise ConfigError(
            "trainer.val_check_interval",
            f"must be at most the {batches_per_epoch} training batches of an epoch, got {interval} "
            "(or set trainer.check_val_every_n_epoch to null to count batches across epochs)",
        )


def refused_trainer_argument(error: BaseException, config: Mapping[str, Any]) -> str | None:
    """The Trainer argument ``Trainer(**config)`` refused with ``error``, or None.

    The argument named in Lightning's message when exactly one configured argument is
    ("`max_epochs` must be ..."); otherwise the one whose reset to the Trainer's default
    lets the Trainer be built (``No supported gpu backend found!`` -> ``accelerator``). The
    logger and the callbacks are left out of these trial Trainers (they are checked apart).
    """
    names = [name for name in config if name not in ("callbacks", "logger", "plugins")]
    mentioned = [name for name in names if re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", str(error))]
    if len(mentioned) == 1:
        return mentioned[0]
    trial = {name: config[name] for name in names} | {"logger": False, "enable_checkpointing": False}

    def build(arguments: dict[str, Any]) -> object:
        return Trainer(**arguments)

    with _quiet_lightning():  # each trial Trainer would print its device summary
        refused = [name for name in refused_arguments(build, Trainer, trial) if name not in ("logger", "enable_checkpointing")]
    return refused[0] if len(refused) == 1 else (mentioned[0] if mentioned else None)


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
