"""Interrupted runs lose nothing: exact resume after SIGTERM; divergence stops cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from attacks import PGD
from callbacks import PreemptionCheckpoint
from datamodules import ResumableDataLoader, SyntheticShapes
from lightning_modules import DivergenceError, RobustClassifier
from losses import ERM, ObjectiveOutput, PGDAdversarialTraining
from tests.conftest import SigtermAtStep, tiny_trainer_kwargs


class RecordMetrics(pl.Callback):
    """Keeps every validation epoch's metrics and every step's training loss."""

    def __init__(self) -> None:
        self.val: dict[int, dict[str, float]] = {}
        self.train_loss: dict[int, float] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.train_loss[trainer.global_step] = float(outputs["loss"])

    def on_validation_end(self, trainer, pl_module) -> None:
        # After the module's own epoch-end hook, which logs val/robust_gap.
        if not trainer.sanity_checking:
            self.val[trainer.current_epoch] = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}


def _setup(tmp_path: Path, *callbacks: pl.Callback) -> tuple[pl.Trainer, RobustClassifier, SyntheticShapes]:
    pl.seed_everything(7)
    dm = SyntheticShapes(image_size=16, num_classes=3, train_size=96, val_size=32, test_size=8, batch_size=16)
    # Random PGD starts and a dropout-free model: the global RNG drives the attack, so a resume
    # that lost the RNG streams or the data order would end with different weights.
    model = RobustClassifier(
        num_classes=3,
        input_shape=dm.input_shape,
        mean=dm.mean,
        std=dm.std,
        backbone_kwargs={"width": 4, "hidden": 16},
        objective=PGDAdversarialTraining(PGD(eps=0.1, step_size=0.05, steps=2), eps_warmup_steps=4),
        eval_attack=PGD(eps=0.1, step_size=0.05, steps=2, seed=0),
        optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    )
    kwargs = tiny_trainer_kwargs() | {"enable_checkpointing": True}
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = pl.Trainer(
        **kwargs, max_epochs=3, deterministic=True, callbacks=[checkpoint, PreemptionCheckpoint(), *callbacks]
    )
    return trainer, model, dm


def test_resume_after_sigterm_ends_exactly_like_an_uninterrupted_fit(tmp_path: Path) -> None:
    reference_metrics = RecordMetrics()
    trainer, model, dm = _setup(tmp_path / "a", reference_metrics)
    trainer.fit(model, dm)
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    # Interrupted in the middle of the second epoch (6 batches per epoch).
    trainer, model, dm = _setup(tmp_path / "b", SigtermAtStep(8))
    with pytest.raises(SIGTERMException):
        trainer.fit(model, dm)
    checkpoint = tmp_path / "b" / "ckpt" / "last.ckpt"
    assert checkpoint.is_file()
    assert torch.load(checkpoint, weights_only=True)["global_step"] == 8

    resumed_metrics = RecordMetrics()
    trainer, model, dm = _setup(tmp_path / "b", resumed_metrics)
    trainer.fit(model, dm, ckpt_path=checkpoint)
    for name, value in model.state_dict().items():
        assert torch.equal(value, reference[name]), name
    for step, loss in resumed_metrics.train_loss.items():
        assert loss == reference_metrics.train_loss[step], step
    assert resumed_metrics.val == {e: reference_metrics.val[e] for e in resumed_metrics.val}
    assert set(resumed_metrics.val) == {1, 2}
    assert "val/robust_gap" in resumed_metrics.val[1]  # its count resumed mid-epoch, exactly


def test_loader_skips_the_batches_served_before_the_interruption() -> None:
    data = torch.arange(20).float()
    loader = ResumableDataLoader(data, batch_size=3, shuffle=True, seed=5)
    loader.sampler.set_epoch(2)
    full = list(loader)
    partial = iter(loader)
    served = [next(partial) for _ in range(4)]
    state = loader.state_dict()
    assert state == {"batches_served": 4}
    fresh = ResumableDataLoader(data, batch_size=3, shuffle=True, seed=5)
    fresh.sampler.set_epoch(2)
    fresh.load_state_dict(state)
    rest = list(fresh)
    assert all(torch.equal(a, b) for a, b in zip(served + rest, full)) and len(served + rest) == len(full)
    # Every epoch draws its own permutation; the same epoch the same one.
    loader.sampler.set_epoch(3)
    assert not torch.equal(torch.cat(list(loader)), torch.cat(full))


class NanAfter(ERM):
    """ERM whose loss turns NaN from the given call on (a diverging run)."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after, self.calls = after, 0

    def forward(self, model, x, y, context=None) -> ObjectiveOutput:
        out = super().forward(model, x, y, context)
        self.calls += 1
        if self.calls <= self.after:
            return out
        bad = out.loss * float("nan")
        return ObjectiveOutput(bad, {"ce": bad.detach()}, out.logits)


def test_divergence_stops_with_the_step_and_part_named_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    pl.seed_everything(0)
    dm = SyntheticShapes(image_size=16, num_classes=3, train_size=64, val_size=16, test_size=8, batch_size=16)
    model = RobustClassifier(
        num_classes=3, input_shape=dm.input_shape, mean=dm.mean, std=dm.std,
        backbone_kwargs={"width": 4, "hidden": 8}, objective=NanAfter(6), eval_attack=None,
    )
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = pl.Trainer(**(tiny_trainer_kwargs() | {"enable_checkpointing": True}), max_epochs=3,
                         callbacks=[checkpoint, PreemptionCheckpoint()])
    with pytest.raises(DivergenceError, match=r"global step 6 \(epoch 1\).*train/ce = nan"):
        trainer.fit(model, dm)
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert last["global_step"] == 4  # the end of the first epoch, before the divergence
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


def test_last_checkpoint_follows_every_epoch_even_when_the_metric_does_not_improve(tmp_path: Path) -> None:
    from callbacks import ModelCheckpoint as RefreshingCheckpoint

    pl.seed_everything(0)
    dm = SyntheticShapes(image_size=16, num_classes=3, train_size=64, val_size=16, test_size=8, batch_size=16)
    model = RobustClassifier(
        num_classes=3, input_shape=dm.input_shape, mean=dm.mean, std=dm.std,
        backbone_kwargs={"width": 4, "hidden": 8}, eval_attack=None,
    )
    # "max" on a loss that falls: only the first epoch is ever the best.
    checkpoint = RefreshingCheckpoint(dirpath=tmp_path, monitor="val/loss", mode="max", save_last=True)
    trainer = pl.Trainer(**(tiny_trainer_kwargs() | {"enable_checkpointing": True}), max_epochs=3, callbacks=[checkpoint])
    trainer.fit(model, dm)
    assert torch.load(checkpoint.best_model_path, weights_only=True)["global_step"] == 4
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert last["global_step"] == 12
    for name, value in model.state_dict().items():
        assert torch.equal(last["state_dict"][name], value), name
