"""WeightAverage: the average is the hand-computed EMA (or mean), and validation, checkpoints,
export, the monitoring callbacks and a resumed fit all use it."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch import Tensor

from attacks import PGD
from callbacks import ModelCheckpoint, PreemptionCheckpoint, WeightAverage
from callbacks.probe import classifier
from datamodules import SyntheticShapes
from export import export_bundle
from lightning_modules import RobustClassifier
from losses import PGDAdversarialTraining
from tests.conftest import SigtermAtStep, tiny_trainer_kwargs

DECAY = 0.6


class RecordLiveWeights(pl.Callback):
    """The classifier's live state after every optimiser step, and the module seen by monitors."""

    def __init__(self) -> None:
        self.after_step: list[dict[str, Tensor]] = []
        self.monitored: list[bool] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.after_step.append({k: v.detach().clone() for k, v in pl_module.model.state_dict().items()})

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        average = next(c for c in trainer.callbacks if isinstance(c, WeightAverage)).average
        self.monitored.append(classifier(pl_module, trainer) is average)


def setup(root: Path, average: WeightAverage, *callbacks: pl.Callback, epochs: int = 2):
    pl.seed_everything(3)
    dm = SyntheticShapes(image_size=16, num_classes=3, train_size=64, val_size=32, test_size=8, batch_size=16)
    model = RobustClassifier(
        num_classes=3,
        input_shape=dm.input_shape,
        mean=dm.mean,
        std=dm.std,
        backbone_kwargs={"width": 4, "hidden": 16, "batch_norm": True},
        objective=PGDAdversarialTraining(PGD(eps=0.1, step_size=0.05, steps=2)),
        eval_attack=PGD(eps=0.1, step_size=0.05, steps=2, seed=0),
        optimizer=lambda p: torch.optim.SGD(p, lr=0.2, momentum=0.9),
    )
    checkpoint = ModelCheckpoint(dirpath=root / "ckpt", monitor="val/acc_pgd", mode="max", save_last=True)
    kwargs = tiny_trainer_kwargs() | {"enable_checkpointing": True}
    trainer = pl.Trainer(**kwargs, max_epochs=epochs, callbacks=[checkpoint, average, *callbacks])
    return trainer, model, dm


def expected_average(states: list[dict[str, Tensor]], decay: float | None) -> dict[str, Tensor]:
    average: dict[str, Tensor] = {}
    for n, state in enumerate(states):
        for key, value in state.items():
            if n == 0 or not value.is_floating_point():
                average[key] = value.clone()
            elif decay is None:
                average[key] = average[key] + (value - average[key]) / (n + 1)
            else:
                average[key] = decay * average[key] + (1 - decay) * value
    return average


def accuracies(model: torch.nn.Module, dm: SyntheticShapes, attack: PGD) -> tuple[float, float]:
    batches = list(dm.val_dataloader())
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    model.eval()
    clean = (model(x).argmax(1) == y).float().mean().item()
    robust = (model(attack(model, x, y)).argmax(1) == y).float().mean().item()
    return clean, robust


@pytest.mark.parametrize("decay, start_step, every", [(DECAY, 0, 1), (None, 2, 3)], ids=["ema", "swa"])
def test_average_equals_the_hand_computed_one_and_validation_uses_it(
    tmp_path: Path, decay: float | None, start_step: int, every: int
) -> None:
    record = RecordLiveWeights()
    average = WeightAverage(decay=decay, start_step=start_step, every_n_steps=every)
    trainer, model, dm = setup(tmp_path, average, record)
    trainer.fit(model, dm)
    steps = [s for i, s in enumerate(record.after_step) if i >= start_step and (i - start_step) % every == 0]
    expected = expected_average(steps, decay)
    assert average.count == len(steps) == (8 if decay else 2)
    for key, value in model.model.state_dict().items():  # after fit the model holds the average
        torch.testing.assert_close(value, expected[key], msg=key)
    assert not all(torch.equal(record.after_step[-1][k], v) for k, v in expected.items())  # not the live weights
    assert record.monitored == [True, True]  # the monitoring callbacks observe the average

    # The last validation (after the last step) measured the average, which the best checkpoint holds.
    clean, robust = accuracies(model.model, dm, model.eval_attack)
    assert trainer.callback_metrics["val/acc"].item() == pytest.approx(clean)
    assert trainer.callback_metrics["val/acc_pgd"].item() == pytest.approx(robust)
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    averaged = model.model.state_dict()
    for key, value in averaged.items():
        assert torch.equal(saved["state_dict"][f"model.{key}"], value), key
        assert torch.equal(saved["weight_average"]["live_state_dict"][key], record.after_step[-1][key]), key

    # The export bundle, built from the checkpoint file, holds the average too.
    bundle = export_bundle(tmp_path / "ckpt" / "last.ckpt", tmp_path / "bundle")
    exported = torch.load(bundle.directory / "state_dict.pt", weights_only=True)
    assert all(torch.equal(exported[k], v) for k, v in averaged.items())


def test_validation_before_the_first_update_uses_the_live_weights(tmp_path: Path) -> None:
    average = WeightAverage(decay=DECAY, start_step=1000)
    trainer, model, dm = setup(tmp_path, average, epochs=1)
    trainer.fit(model, dm)
    assert average.count == 0
    clean, robust = accuracies(model.model, dm, model.eval_attack)
    assert trainer.callback_metrics["val/acc_pgd"].item() == pytest.approx(robust)
    assert "weight_average" not in torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)


def test_resumed_fit_ends_with_the_average_of_an_uninterrupted_one(tmp_path: Path) -> None:
    trainer, model, dm = setup(tmp_path / "a", WeightAverage(decay=DECAY), PreemptionCheckpoint(), epochs=2)
    trainer.fit(model, dm)
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    trainer, model, dm = setup(tmp_path / "b", WeightAverage(decay=DECAY), PreemptionCheckpoint(), SigtermAtStep(6))
    with pytest.raises(SIGTERMException):
        trainer.fit(model, dm)
    checkpoint = tmp_path / "b" / "ckpt" / "last.ckpt"
    trainer, model, dm = setup(tmp_path / "b", WeightAverage(decay=DECAY), PreemptionCheckpoint(), epochs=2)
    trainer.fit(model, dm, ckpt_path=checkpoint)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, reference[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize(
    "kwargs, field", [({"decay": 1.0}, "decay"), ({"start_step": -1}, "start_step"), ({"every_n_steps": 0}, "every_n_steps")]
)
def test_bad_settings_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field} must"):
        WeightAverage(**kwargs)
