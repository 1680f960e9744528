"""RobustClassifier: evaluation under attack, logging, and PGD-AT against ERM."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from attacks import PGD
from datamodules import SyntheticShapes
from lightning_modules import RobustClassifier
from losses import ERM, PGDAdversarialTraining
from tests.conftest import tiny_trainer_kwargs


def _module(dm: SyntheticShapes, objective=None, eps: float = 0.1) -> RobustClassifier:
    return RobustClassifier(
        num_classes=dm.num_classes,
        input_shape=dm.input_shape,
        mean=dm.mean,
        std=dm.std,
        backbone_kwargs={"width": 16, "hidden": 32},
        objective=objective,
        eval_attack=PGD(eps=eps, step_size=eps / 4, steps=10, seed=0),
        optimizer=lambda params: torch.optim.Adam(params, lr=3e-3),
    )


def test_validation_measures_pgd_accuracy_with_and_without_inference_mode() -> None:
    dm = SyntheticShapes(image_size=16, num_classes=3, train_size=8, val_size=64, test_size=8, eval_batch_size=32)
    model = _module(dm)
    results = [
        pl.Trainer(**tiny_trainer_kwargs(), inference_mode=mode).validate(model, dm, verbose=False)[0]
        for mode in (True, False)
    ]
    assert results[0] == results[1]
    # The same number by hand, outside Lightning.
    dm.setup("validate")
    x, y = dm.split_dataset("val").data.images, dm.split_dataset("val").data.labels
    model.eval()
    correct = 0
    for xb, yb in zip(x.split(32), y.split(32)):
        correct += (model(model.eval_attack(model.model, xb, yb)).argmax(1) == yb).sum().item()
    assert abs(results[0]["val/acc_pgd"] - correct / len(y)) < 1e-6
    assert results[0]["val/acc_pgd"] <= results[0]["val/acc"]


def test_pgd_training_beats_erm_under_attack() -> None:
    """A few epochs on the same data and budget: PGD-AT's robust accuracy is far above ERM's,
    and PGD-AT has not settled on the constant classifier (clean accuracy above chance)."""
    metrics = {}
    for name in ("erm", "pgd"):
        pl.seed_everything(0)
        dm = SyntheticShapes(image_size=16, num_classes=4, train_size=1024, val_size=200, test_size=8, batch_size=32)
        objective = ERM() if name == "erm" else PGDAdversarialTraining(
            PGD(eps=0.1, step_size=0.1 / 3, steps=5), eps_warmup_steps=96
        )
        trainer = pl.Trainer(**tiny_trainer_kwargs(), max_epochs=6)
        trainer.fit(_module(dm, objective), dm)
        metrics[name] = {k: float(v) for k, v in trainer.callback_metrics.items()}
    erm, pgd = metrics["erm"], metrics["pgd"]
    assert erm["val/acc"] > 0.7  # ERM learns the task ...
    assert erm["val/acc_pgd"] < 0.1  # ... and is not robust
    assert pgd["val/acc"] > 0.25 + 0.15  # above chance (4 classes): not the constant classifier
    assert pgd["val/acc_pgd"] > erm["val/acc_pgd"] + 0.15
    assert "train/ce_adv" in pgd and "train/eps" in pgd


def test_eps_warmup_ramps_linearly_and_is_saved_in_the_state_dict() -> None:
    objective = PGDAdversarialTraining(PGD(eps=0.2, step_size=0.05, steps=1), eps_warmup_steps=4)
    fractions = [objective.warmup.next_fraction() for _ in range(6)]
    assert fractions == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert int(objective.state_dict()["warmup.steps_done"]) == 6


def test_training_step_leaves_only_the_objectives_gradients() -> None:
    # One manual step: the attack inside the objective must not leave gradients behind, so
    # the weights' .grad after backward equal the gradient of the objective's loss alone.
    dm = SyntheticShapes(image_size=16, num_classes=3, train_size=16, val_size=8, test_size=8)
    dm.setup("fit")
    torch.manual_seed(0)
    objective = PGDAdversarialTraining(PGD(eps=0.1, step_size=0.05, steps=2, seed=0))
    module = _module(dm, objective)
    x, y = dm.split_dataset("train").data.images, dm.split_dataset("train").data.labels
    out = objective(module.model, x, y)
    expected = torch.autograd.grad(out.loss, list(module.model.parameters()), retain_graph=True)
    out.loss.backward()
    for p, g in zip(module.model.parameters(), expected):
        torch.testing.assert_close(p.grad, g)


def test_checkpoint_of_a_python_built_module_loads_without_unpickling_code(tmp_path) -> None:
    dm = SyntheticShapes(image_size=16, num_classes=3, train_size=16, val_size=8, test_size=8, batch_size=8)
    module = _module(dm, PGDAdversarialTraining(PGD(eps=0.1, step_size=0.05, steps=1)))
    trainer = pl.Trainer(**tiny_trainer_kwargs(), max_steps=1, limit_val_batches=0)
    trainer.fit(module, dm)
    path = tmp_path / "module.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    assert hparams["objective"] == "losses.pgd_at.PGDAdversarialTraining"
    assert hparams["backbone"] == "small_cnn" and hparams["num_classes"] == 3
