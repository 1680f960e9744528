"""Shared fixtures: tiny models and data, W&B offline, quiet Lightning."""

from __future__ import annotations

import logging
import os
import signal

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from tests.trained_model import TrainedShapes, train_shapes_model

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

# The tests work on tiny tensors, where intra-op threads cost more than they give, and on a
# shared machine a busy second core makes every threaded op wait: one thread is faster and
# steadier here.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


class LinearImageClassifier(nn.Module):
    """f(x) = W·vec(x) + b: input gradients have a closed form (the rows of W)."""

    def __init__(self, input_shape: tuple[int, int, int] = (1, 8, 8), num_classes: int = 2) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(int(torch.tensor(input_shape).prod()), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.flatten(x))


@pytest.fixture
def linear_model() -> LinearImageClassifier:
    return LinearImageClassifier()


def tiny_trainer_kwargs() -> dict:
    """Trainer options for fast, quiet CPU runs in tests."""
    return dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


@pytest.fixture(scope="session")
def trained_shapes() -> TrainedShapes:
    """A small CNN trained on synthetic shapes (a few seconds, once per session)."""
    trained = train_shapes_model()
    assert trained.accuracy > 0.6, f"the test model did not learn the task (accuracy {trained.accuracy:.2f})"
    return trained


class SigtermAtStep(pl.Callback):
    """Sends this process SIGTERM after the given global step, as a cluster pre-empting it."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)
