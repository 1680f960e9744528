"""An exact resume with the monitoring callbacks on logs what the uninterrupted run logs.

The callbacks keep the position of their last run (and the probe indices) in the checkpoint.
Resumed after a SIGTERM mid-epoch, they go on at the same cadence, and the values, the steps
they are logged at and the final weights equal those of the uninterrupted run. Resumed from a
checkpoint saved when an epoch's validation ended (before the monitor's epoch-end run),
Lightning ends that epoch again: the monitor makes the run it owes there, once.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from callbacks import PreemptionCheckpoint
from tests.conftest import SigtermAtStep, tiny_trainer_kwargs
from tests.monitoring import monitor, robustness, tiny_data, tiny_model

KEYS = ("expl/saliency/spearman@noise", "expl/integrated_gradients/relevance_mass", "robust/acc@eps=0.05")


def _fit(root: Path, ckpt_path: Path | None = None, interrupt_at: int | None = None) -> tuple[dict, dict[str, list]]:
    pl.seed_everything(7)
    dm = tiny_data()
    model = tiny_model(dm)
    logger = CSVLogger(root, name="csv")
    callbacks: list[pl.Callback] = [
        # Saved when validation ends (as with check_val_every_n_epoch > 1), before the epoch's end.
        ModelCheckpoint(dirpath=root / "ckpt", save_last=True, save_top_k=-1, save_on_train_epoch_end=False),
        PreemptionCheckpoint(),
        monitor(every_n_epochs=1),
        robustness(every_n_steps=4),
    ]
    if interrupt_at is not None:
        callbacks.append(SigtermAtStep(interrupt_at))
    kwargs = tiny_trainer_kwargs() | {"enable_checkpointing": True, "logger": logger}
    trainer = pl.Trainer(**kwargs, max_epochs=3, deterministic=True, callbacks=callbacks)
    try:
        trainer.fit(model, dm, ckpt_path=ckpt_path)
    except SIGTERMException:
        pass
    with open(Path(logger.log_dir) / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    logged = {key: [(int(r["step"]), r[key]) for r in rows if r.get(key)] for key in KEYS}
    return model.state_dict(), logged


def test_resumed_runs_log_the_values_of_the_uninterrupted_run_at_the_same_steps(tmp_path: Path) -> None:
    reference_weights, reference = _fit(tmp_path / "a")
    assert [step for step, _ in reference["expl/saliency/spearman@noise"]] == [6, 12, 18]
    assert [step for step, _ in reference["robust/acc@eps=0.05"]] == [4, 8, 12, 16]

    # SIGTERM after step 8, in the middle of the second epoch, then resume.
    _, before = _fit(tmp_path / "b", interrupt_at=8)
    weights, after = _fit(tmp_path / "b", ckpt_path=tmp_path / "b" / "ckpt" / "last.ckpt")
    for key in KEYS:
        assert before[key] + after[key] == reference[key], key  # each value once, at its step
    for name, value in reference_weights.items():
        assert weights[name].equal(value), name

    # From the checkpoint saved when epoch 0's validation ended: the monitor had not run for
    # that epoch yet; it runs once, with the weights the uninterrupted run had then. (Training
    # after such a resume is not compared: the data loader does not yet resume exactly from a
    # checkpoint taken after the last batch of an epoch.)
    _, resumed = _fit(tmp_path / "c", ckpt_path=tmp_path / "a" / "ckpt" / "epoch=0-step=6.ckpt")
    for key in KEYS[:2]:
        assert [entry for entry in resumed[key] if entry[0] == 6] == reference[key][:1], key


def test_the_checkpoint_keeps_the_probe_indices_and_a_changed_probe_set_is_reported(tmp_path: Path) -> None:
    callback = monitor()
    callback.use_probe(tiny_data().probe_batch(12, seed=0))
    state = callback.state_dict()
    assert state["probe_indices"].tolist() == callback.probe.indices.tolist()  # type: ignore[union-attr]
    assert {"last_epoch", "last_step", "runs"} <= set(state)
    other = monitor(probe_seed=1)
    other.use_probe(tiny_data().probe_batch(12, seed=1))
    with pytest.warns(UserWarning, match="probe set drawn now differs from the checkpoint's"):
        other.load_state_dict(state)
