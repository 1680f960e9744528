"""What the monitoring callbacks share: a fixed probe set, split over processes, and a cadence.

A probe set is drawn once, at the start of ``fit``, with the datamodule's seeded
:meth:`~datamodules.ImageDataModule.probe_batch` (the same examples in every epoch and on every
resume, so curves compare like with like). Under DDP each rank keeps a contiguous share of it
(:func:`share_bounds`); the callbacks' torchmetrics states reduce across ranks, and per-example
rows are gathered in probe order (:func:`gather_rows`), so every number equals the one a single
process computes on the whole probe set. Files and images are written by rank zero only.

Lifecycle (Lightning hooks): ``setup("fit")`` draws the probe set and validates it against the
options (size, masks) before any training; ``state_dict`` keeps the probe indices and the
position of the last evaluation; sanity-check validation, ``fast_dev_run`` and the
validate/test/predict stages are skipped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn

from callbacks.cadence import Cadence
from datamodules import ProbeBatch

PROBE_SPLIT = "val"


def share_bounds(n: int, world_size: int, rank: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of an ``n``-row probe set that ``rank`` of ``world_size`` owns.

    Contiguous, in rank order, the first ``n % world_size`` ranks one row longer (the split of
    ``torch.tensor_split``), so concatenating the shares in rank order gives the probe set back.
    """
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_rows(rows: Tensor, n: int) -> Tensor:
    """Concatenate every rank's share ``rows`` (its :func:`share_bounds` rows of an ``n``-row
    probe set) in rank order; in one process, ``rows`` itself. A collective call: every rank
    must make it."""
    if not _distributed():
        return rows
    world_size = dist.get_world_size()
    sizes = [share_bounds(n, world_size, r)[1] - share_bounds(n, world_size, r)[0] for r in range(world_size)]
    padded = rows.new_zeros((max(sizes), *rows.shape[1:]))  # all_gather needs equal shapes
    padded[: rows.shape[0]] = rows
    gathered = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[:size] for g, size in zip(gathered, sizes)])


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for a model with neither."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def classifier(pl_module: LightningModule, trainer: Trainer | None = None) -> nn.Module:
    """The plain classifier inside a LightningModule: its ``model`` attribute when that is a
    module (``RobustClassifier.model``: normalisation + backbone), else the module itself.

    With ``trainer``: the averaged classifier instead, when a callback of the trainer keeps one
    (:class:`callbacks.WeightAverage`), so monitoring observes the weights that are validated,
    checkpointed and exported.
    """
    if trainer is not None:
        for callback in trainer.callbacks:  # type: ignore[attr-defined]
            averaged = getattr(callback, "averaged_classifier", None)
            model = averaged(trainer) if callable(averaged) else None
            if model is not None:
                return model
    inner = getattr(pl_module, "model", None)
    return inner if isinstance(inner, nn.Module) else pl_module


def check_int(name: str, value: Any, low: int) -> None:
    """Raise a ValueError naming ``name`` unless ``value`` is an integer >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


class ProbeCallback(Callback):
    """Base class: draws a seeded probe set from the validation split at the start of fit.

    Args:
        probe_size: examples in the probe set (at most the size of the validation split, and
            at least the number of processes).
        probe_seed: seed of the draw (independent of the training seed).
        batch_size: examples per forward/backward pass while evaluating the probe set.
    """

    def __init__(self, probe_size: int, probe_seed: int, batch_size: int) -> None:
        check_int("probe_size", probe_size, 1)
        check_int("probe_seed", probe_seed, 0)
        check_int("batch_size", batch_size, 1)
        self.probe_size = probe_size
        self.probe_seed = probe_seed
        self.batch_size = batch_size
        self.probe: ProbeBatch | None = None
        self.class_names: list[str] = []
        self._share: ProbeBatch | None = None
        self._share_bounds = (0, 0)
        self.seconds = 0.0  # wall time spent evaluating and logging in this process, all runs

    # -- the probe set -------------------------------------------------------------------------

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != TrainerFn.FITTING.value:
            return
        datamodule = trainer.datamodule  # type: ignore[attr-defined]
        probe = self.draw_probe(datamodule, trainer.world_size)
        self.use_probe(
            probe,
            type(datamodule).__name__,
            [str(c) for c in getattr(datamodule, "class_names", [])],
            trainer.global_rank,
            trainer.world_size,
        )

    def draw_probe(self, datamodule: Any, world_size: int = 1) -> ProbeBatch:
        """Draw this callback's probe set from ``datamodule`` (set up) and check it fits the options.

        ``train.py`` calls this before the run starts, so that a probe set larger than the split
        or a mask metric on data without masks stops the command before anything is written.

        Raises:
            ValueError: naming the option (``probe_size``, a metric) and what is allowed.
        """
        name = type(self).__name__
        if datamodule is None or not callable(getattr(datamodule, "probe_batch", None)):
            raise ValueError(
                f"{name} needs a datamodule with probe_batch() (a datamodules.ImageDataModule), "
                f"got {type(datamodule).__name__}"
            )
        available = len(datamodule.split_dataset(PROBE_SPLIT))
        if self.probe_size > available:
            raise ValueError(
                f"probe_size must be at most {available} (the size of the {PROBE_SPLIT} split of "
                f"{type(datamodule).__name__}) for {name}, got {self.probe_size}"
            )
        if self.probe_size < world_size:
            raise ValueError(
                f"probe_size must be at least the number of processes ({world_size}) for {name}, "
                f"got {self.probe_size}"
            )
        with torch.random.fork_rng(devices=[]):  # the draw has its own generator; be sure anyway
            probe = datamodule.probe_batch(self.probe_size, self.probe_seed, split=PROBE_SPLIT)
        self.check_probe(probe, type(datamodule).__name__)
        return probe

    def use_probe(
        self,
        probe: ProbeBatch,
        datamodule_name: str = "the datamodule",
        class_names: Sequence[str] = (),
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        """Adopt ``probe`` as the probe set and keep ``rank``'s share of it (``setup`` calls this;
        so can code that evaluates without a Trainer).

        Raises:
            ValueError: the probe set lacks what an option needs (masks for a metric, ...).
        """
        self.check_probe(probe, datamodule_name)
        self.probe = probe
        self.class_names = list(class_names)
        self._share_bounds = share_bounds(len(probe), world_size, rank)
        self._share = probe.slice(*self._share_bounds)

    def check_probe(self, probe: ProbeBatch, datamodule_name: str) -> None:
        """Subclasses raise a ValueError here when the probe set lacks what an option needs."""

    def share(self, device: torch.device | str = "cpu") -> ProbeBatch:
        """This rank's share of the probe set, on ``device``."""
        if self._share is None:
            raise RuntimeError(f"{type(self).__name__} has no probe set: it is drawn in setup('fit')")
        if self._share.x.device != device:
            self._share = self._share.to(device)
        return self._share

    def class_name(self, index: int) -> str:
        return self.class_names[index] if 0 <= index < len(self.class_names) else str(index)

    # -- when to run --------------------------------------------------------------------------

    def skip(self, trainer: Trainer) -> bool:
        """Nothing to do outside a real fit: sanity checking, fast_dev_run, other stages."""
        return (
            self.probe is None
            or trainer.sanity_checking
            or bool(trainer.fast_dev_run)
            or trainer.state.fn != TrainerFn.FITTING
        )

    # -- resumable state ----------------------------------------------------------------------

    @property
    def state_key(self) -> str:
        # Two instances with different options keep separate states in a checkpoint.
        return self._generate_state_key(**self.state_key_fields())

    def state_key_fields(self) -> dict[str, Any]:
        """The options that tell two instances of the class apart (subclasses extend them)."""
        return {"probe_size": self.probe_size, "probe_seed": self.probe_seed}

    def state_dict(self) -> dict[str, Any]:
        return {"probe_indices": None if self.probe is None else self.probe.indices.clone()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("probe_indices")
        if saved is None or self.probe is None:
            return
        if not torch.equal(saved.cpu(), self.probe.indices.cpu()):
            rank_zero_warn(
                f"{type(self).__name__}: the probe set drawn now differs from the checkpoint's (the "
                "validation split or the probe options changed); values logged after this resume "
                "are not comparable with those before it"
            )


class PeriodicProbeCallback(ProbeCallback):
    """A probe callback that runs every N epochs (at the end of the training epoch, after its
    validation) or every N optimiser steps (after the step).

    Args:
        every_n_epochs: run after every this many training epochs.
        every_n_steps: run after every this many optimiser steps. Set at most one of the two;
            with neither, every epoch.
        probe_size, probe_seed, batch_size: see :class:`ProbeCallback`.
    """

    def __init__(
        self,
        probe_size: int,
        probe_seed: int,
        batch_size: int,
        every_n_epochs: int | None,
        every_n_steps: int | None,
    ) -> None:
        self.cadence = Cadence.from_options(every_n_epochs, every_n_steps)
        super().__init__(probe_size, probe_seed, batch_size)
        self.last_epoch = -1  # the training epoch after which it last ran
        self.last_step = -1  # the global step at which it last ran
        self.runs = 0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == TrainerFn.FITTING.value:  # a new fit; a resumed one loads its position next
            self.last_epoch, self.last_step, self.runs = -1, -1, 0

    def run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Evaluate the probe set and log the results (on every rank: may hold collectives)."""
        raise NotImplementedError

    def _run_now(self, trainer: Trainer, pl_module: LightningModule, epoch: int) -> None:
        started = time.perf_counter()
        self.run(trainer, pl_module)
        self.seconds += time.perf_counter() - started
        self.last_epoch, self.last_step = epoch, trainer.global_step
        self.runs += 1

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Resumed from a checkpoint saved when the epoch's validation ended (before its end),
        # Lightning ends that epoch again: the run is made then if the checkpoint predates it,
        # and not a second time otherwise. Without an optimiser step since the last run the
        # weights are those it measured: nothing new to log.
        epoch = trainer.current_epoch
        if self.skip(trainer) or not self.cadence.due_after_epoch(epoch):
            return
        if epoch <= self.last_epoch or trainer.global_step == self.last_step:
            return
        self._run_now(trainer, pl_module, epoch)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # global_step counts optimiser steps: with gradient accumulation it stays put for
        # several batches, and the run is due once.
        if self.skip(trainer) or not self.cadence.due_after_step(trainer.global_step):
            return
        if trainer.global_step > self.last_step:
            self._run_now(trainer, pl_module, trainer.current_epoch)

    def state_key_fields(self) -> dict[str, Any]:
        return {**super().state_key_fields(), "cadence": str(self.cadence)}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "last_epoch": self.last_epoch, "last_step": self.last_step, "runs": self.runs}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.last_epoch = int(state_dict.get("last_epoch", -1))
        self.last_step = int(state_dict.get("last_step", -1))
        self.runs = int(state_dict.get("runs", 0))
