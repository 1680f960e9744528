"""val/robust_gap: the epoch's accuracy on the training attack's examples minus val/acc_pgd."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from attacks import PGD
from datamodules import SyntheticShapes
from lightning_modules import RobustClassifier
from losses import ERM, TRADES, Objective, PGDAdversarialTraining
from tests.conftest import tiny_trainer_kwargs


class RecordEpochs(pl.Callback):
    """Per epoch: Σ (step accuracy on adversarial examples × batch size), Σ batch sizes, and the
    validation metrics once the module's epoch-end hook has logged."""

    def __init__(self) -> None:
        self.correct: dict[int, float] = {}
        self.seen: dict[int, int] = {}
        self.val: dict[int, dict[str, float]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        metrics, epoch, n = trainer.callback_metrics, trainer.current_epoch, len(batch[1])
        if "train/acc_adv" in metrics:
            self.correct[epoch] = self.correct.get(epoch, 0.0) + float(metrics["train/acc_adv"]) * n
            self.seen[epoch] = self.seen.get(epoch, 0) + n

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.val[trainer.current_epoch] = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}


def fit(objective: Objective, epochs: int = 2) -> RecordEpochs:
    pl.seed_everything(0)
    dm = SyntheticShapes(image_size=16, num_classes=3, train_size=48, val_size=32, test_size=8, batch_size=16)
    model = RobustClassifier(
        num_classes=3,
        input_shape=dm.input_shape,
        mean=dm.mean,
        std=dm.std,
        backbone_kwargs={"width": 4, "hidden": 16},
        objective=objective,
        eval_attack=PGD(eps=0.1, step_size=0.05, steps=2, seed=0),
        optimizer=lambda p: torch.optim.SGD(p, lr=0.3),
    )
    record = RecordEpochs()
    pl.Trainer(**tiny_trainer_kwargs(), max_epochs=epochs, callbacks=[record]).fit(model, dm)
    return record


@pytest.mark.parametrize("objective", ["pgd_at", "trades"])
def test_robust_gap_is_train_adversarial_accuracy_minus_val_pgd_accuracy(objective: str) -> None:
    attack = PGD(eps=0.1, step_size=0.05, steps=2)
    record = fit(PGDAdversarialTraining(attack) if objective == "pgd_at" else TRADES(attack=attack))
    for epoch in (0, 1):  # counted afresh each epoch
        train_robust = record.correct[epoch] / record.seen[epoch]
        val = record.val[epoch]
        assert val["val/robust_gap"] == pytest.approx(train_robust - val["val/acc_pgd"], abs=1e-6)


def test_no_robust_gap_without_adversarial_training() -> None:
    record = fit(ERM(), epochs=1)
    assert not record.seen and "val/robust_gap" not in record.val[0]
