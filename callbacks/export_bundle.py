"""Export the best checkpoint as a bundle at the end of fit, and log it to W&B.

Add it to a recipe's callbacks::

    trainer:
      callbacks:
        - class_path: callbacks.ModelCheckpoint
          init_args: {monitor: val/acc_pgd, mode: max, save_last: true}
        - class_path: callbacks.ExportBundle
          init_args: {monitor: val/acc_pgd}

At the end of ``fit`` the best checkpoint of the ModelCheckpoint that monitors ``monitor`` is
exported (:func:`export.export_bundle`) into ``out_dir`` (default: ``bundle/`` beside the
checkpoints folder), and, when a logger is W&B, logged as the run's ``model-<run id>``
artifact with the alias "best" (also offline, for a later ``wandb sync``). It works on the
checkpoint file, never on the live module, so what is exported is exactly what was saved.
"""

from __future__ import annotations

from pathlib import Path

from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_info, rank_zero_warn

from export.bundle import Bundle, export_bundle
from export.wandb_artifact import artifact_name, log_bundle_artifact


class ExportBundle(Callback):
    """At the end of fit, export the best checkpoint and log the bundle to W&B.

    Args:
        monitor: the metric whose ModelCheckpoint chooses the checkpoint ("val/acc_pgd");
            None takes the trainer's first ModelCheckpoint, whatever it monitors.
        out_dir: the bundle folder; None puts it beside the checkpoints folder
            (``<run>/bundle``). An existing bundle there is replaced.
        log_artifact: log the bundle as a W&B artifact when a logger is W&B.
    """

    def __init__(
        self, monitor: str | None = "val/acc_pgd", out_dir: str | None = None, log_artifact: bool = True
    ) -> None:
        if monitor is not None and not monitor:
            raise ValueError(f"monitor must be a metric name or None, got {monitor!r}")
        self.monitor = monitor
        self.out_dir = out_dir
        self.log_artifact = log_artifact
        self.bundle: Bundle | None = None

    @staticmethod
    def _checkpoint_callbacks(trainer: Trainer) -> list[ModelCheckpoint]:
        return [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]  # type: ignore[attr-defined]

    def _checkpoint_callback(self, trainer: Trainer) -> ModelCheckpoint | None:
        callbacks = self._checkpoint_callbacks(trainer)
        if self.monitor is None:
            return callbacks[0] if callbacks else None
        return next((c for c in callbacks if c.monitor == self.monitor), None)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self.check_monitor(trainer)

    def check_monitor(self, trainer: Trainer) -> None:
        """Raise a ValueError unless one of ``trainer``'s ModelCheckpoints monitors ``monitor``
        (``train.py`` calls it before any work)."""
        if self._checkpoint_callback(trainer) is not None:
            return
        monitored = [c.monitor for c in self._checkpoint_callbacks(trainer)]
        raise ValueError(
            f"monitor must be the metric of a ModelCheckpoint callback, got {self.monitor!r}; "
            f"the trainer's ModelCheckpoints monitor {monitored or 'nothing (there is none)'}"
        )

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.fast_dev_run or not trainer.is_global_zero:
            return
        callback = self._checkpoint_callback(trainer)
        path = callback.best_model_path if callback is not None else ""
        if not path or not Path(path).is_file():
            rank_zero_warn(f"ExportBundle: no best checkpoint for {self.monitor!r} was saved; nothing exported")
            return
        out_dir = Path(self.out_dir) if self.out_dir else Path(path).parent.parent / "bundle"
        try:
            self.bundle = export_bundle(path, out_dir, overwrite=True)
        except (ValueError, OSError) as error:
            raise RuntimeError(
                f"ExportBundle could not export {path} ({error}); the checkpoint is intact: "
                f"`python train.py export --ckpt_path {path} --out_dir {out_dir}` retries"
            ) from error
        rank_zero_info(
            f"ExportBundle: {path} -> {out_dir} ({self.bundle.total_bytes / 1e6:.2f} MB, {self.bundle.seconds:.1f} s)"
        )
        if not self.log_artifact:
            return
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                run = logger.experiment
                log_bundle_artifact(run, self.bundle, artifact_name(run.id, "model"), aliases=("best", "latest"))
