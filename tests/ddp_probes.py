"""Callbacks that tests add to a recipe (``--trainer.callbacks+=tests.ddp_probes.<Name>``) to see
what each process of a multi-process fit did."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytorch_lightning as pl
import torch


class RecordTrainingImages(pl.Callback):
    """Writes, per rank and epoch, a digest of every training image the rank trained on."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.seen: list[str] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seen = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        x = batch[0].detach().cpu().contiguous()
        self.seen.extend(hashlib.sha1(row.numpy().tobytes()).hexdigest() for row in x)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"rank{trainer.global_rank}_epoch{trainer.current_epoch}.pt"
        torch.save({"digests": self.seen, "world_size": trainer.world_size}, path)


def image_digests(images: torch.Tensor) -> list[str]:
    """The digests :class:`RecordTrainingImages` computes, for a tensor of images."""
    return [hashlib.sha1(row.contiguous().numpy().tobytes()).hexdigest() for row in images]


class RecordWeights(pl.Callback):
    """Writes each rank's final weights, to check that the processes stayed in sync."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save(state, self.out_dir / f"weights_rank{trainer.global_rank}.pt")
