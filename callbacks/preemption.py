"""Save a resumable checkpoint when a fit is interrupted.

Clusters pre-empt jobs with SIGTERM (SLURM, Kubernetes, spot instances). Lightning turns the
signal into a ``SIGTERMException`` at the end of the current training batch, on every rank;
this callback then writes a full checkpoint — weights, optimiser, loop position inside the
epoch, callback states, RNG streams — so that ``fit --ckpt_path <it>`` continues exactly where
the run stopped. Ctrl-C is treated the same way. Any other exception (a divergence, a bug)
saves nothing: the last good checkpoint stays the last one.
"""

from __future__ import annotations

import os

from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException


class PreemptionCheckpoint(Callback):
    """On SIGTERM or Ctrl-C during fit, save a checkpoint to resume from.

    Args:
        filename: file name of the checkpoint; ``last.ckpt`` (the default) puts it where
            ``ModelCheckpoint(save_last=True)`` keeps its last checkpoint.
        dirpath: folder; default: the ModelCheckpoint's folder, else ``<log dir>/checkpoints``.
    """

    def __init__(self, filename: str = "last.ckpt", dirpath: str | None = None) -> None:
        if not filename or os.sep in filename:
            raise ValueError(f"filename must be a plain file name, got {filename!r}")
        self.filename = filename
        self.dirpath = dirpath
        self.saved_path: str | None = None

    def _directory(self, trainer: Trainer) -> str:
        if self.dirpath is not None:
            return self.dirpath
        callback = trainer.checkpoint_callback
        if callback is not None and getattr(callback, "dirpath", None):
            return str(callback.dirpath)
        return os.path.join(trainer.log_dir or trainer.default_root_dir, "checkpoints")

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (SIGTERMException, KeyboardInterrupt)):
            return
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking or trainer.fast_dev_run:
            return
        path = os.path.join(self._directory(trainer), self.filename)
        trainer.save_checkpoint(path)
        self.saved_path = path
        rank_zero_info(
            f"robustlens: {type(exception).__name__} at global step {trainer.global_step}; "
            f"resumable checkpoint saved to {path} (resume with --ckpt_path {path})"
        )
