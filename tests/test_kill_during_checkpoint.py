"""A process killed (SIGKILL) inside a checkpoint write loses nothing: the last checkpoint on disk
is whole, loads, and a resume from it ends exactly like a fit that was never interrupted.

The fit is the pre-emption test's (tests/test_resume.py: PGD training with random starts, so a
resume that lost the RNG streams or the data order would end with other weights), run with
:class:`callbacks.checkpoint_io.AtomicCheckpointIO` in a child process (forked: it starts in
milliseconds and computes exactly what the parent would; spawned where the parent has used
CUDA). The child is SIGKILLed inside its fourth checkpoint write (``last.ckpt`` at the end of the
second epoch) at one of several points:

- ``mid-write``: when a given share of the checkpoint's bytes is in the temporary file (shares drawn
  at random once, with a fixed seed, so that every run tries the same points);
- ``before-rename``: the temporary file complete and synced, not yet renamed into place;
- ``after-rename``: renamed into place, the folder not yet synced.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import random
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from callbacks.checkpoint_io import AtomicCheckpointIO
from export.checkpoint import read_checkpoint
from tests.test_resume import _setup

STEPS_PER_EPOCH = 6  # 96 examples in batches of 16
LAST_SAVE_OF_EPOCH_1 = 4  # epoch 0: epoch=0-step=6.ckpt, last.ckpt; epoch 1: epoch=1-step=12.ckpt, last.ckpt

_draw = random.Random(19)
MID_WRITE = [round(_draw.uniform(0.02, 0.98), 3) for _ in range(3)]
POINTS = [
    *[pytest.param("mid-write", f, id=f"mid-write-{f}") for f in MID_WRITE],
    pytest.param("before-rename", 1.0, id="before-rename"),
    pytest.param("after-rename", 1.0, id="after-rename"),
]


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillingCheckpointIO(AtomicCheckpointIO):
    """Atomic checkpoint writes, the ``save``-th of which dies at ``point``."""

    def __init__(self, save: int, point: str, fraction: float) -> None:
        super().__init__()
        self.save, self.point, self.fraction = save, point, fraction
        self.saves = 0

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        self.saves += 1
        if self.saves == self.save and self.point in ("before-rename", "after-rename"):
            replace = os.replace

            def replace_and_die(src: Any, dst: Any) -> None:
                if self.point == "before-rename":
                    _die()
                replace(src, dst)
                _die()

            os.replace = replace_and_die  # only in the child, which dies here
        super().save_checkpoint(checkpoint, path, storage_options)

    def serialise(self, checkpoint: dict[str, Any], handle: Any) -> None:
        if self.saves != self.save or self.point != "mid-write":
            super().serialise(checkpoint, handle)
            return
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        data = buffer.getvalue()
        handle.write(data[: int(len(data) * self.fraction)])
        handle.flush()
        _die()


def _killed_fit(folder: Path, point: str, fraction: float) -> None:
    trainer, model, dm = _setup(folder)
    trainer.strategy.checkpoint_io = KillingCheckpointIO(LAST_SAVE_OF_EPOCH_1, point, fraction)
    trainer.fit(model, dm)
    os._exit(3)  # never reached when the kill works


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    trainer, model, dm = _setup(tmp_path_factory.mktemp("reference"))
    trainer.fit(model, dm)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("point, fraction", POINTS)
def test_resume_after_a_kill_inside_a_checkpoint_write_ends_like_an_uninterrupted_fit(
    tmp_path: Path, reference: dict[str, torch.Tensor], point: str, fraction: float
) -> None:
    # A forked child cannot use CUDA once the parent has: spawn a fresh interpreter then (slower).
    method = "spawn" if torch.cuda.is_initialized() else "fork"
    child = multiprocessing.get_context(method).Process(target=_killed_fit, args=(tmp_path, point, fraction))
    child.start()
    child.join(timeout=300)
    assert child.exitcode == -signal.SIGKILL
    last = tmp_path / "ckpt" / "last.ckpt"
    checkpoint = read_checkpoint(last)  # whole: an intact archive that loads with weights_only=True
    assert checkpoint["global_step"] == STEPS_PER_EPOCH * (2 if point == "after-rename" else 1)
    leftovers = [p.name for p in (tmp_path / "ckpt").iterdir() if ".partial-" in p.name]
    assert leftovers == ([] if point == "after-rename" else [f".last.ckpt.partial-{leftovers[0].rsplit('-', 1)[-1]}"])

    trainer, model, dm = _setup(tmp_path)
    trainer.strategy.checkpoint_io = AtomicCheckpointIO()
    trainer.fit(model, dm, ckpt_path=last)
    for name, value in model.state_dict().items():
        assert torch.equal(value, reference[name]), name
    assert not [p.name for p in (tmp_path / "ckpt").iterdir() if ".partial-" in p.name]  # cleared by the next write
