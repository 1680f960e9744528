"""Second-order objectives and the catastrophic-overfitting check under DDP (two CPU processes).

DDP's default ``find_unused_parameters=False`` fails a step when a parameter gets no gradient,
and a collective called on one process only hangs; this runs a composed objective with every
kind of extra work (FGSM-RS with its PGD probe all-reduced each step, a double-backprop penalty,
attribution stability) through ``ddp_spawn`` for two steps, and AWP (an all-reduce of its own
inside the step) with the EMA callback.
"""

from __future__ import annotations

import pytest
import torch
from pytorch_lightning import Trainer

from attacks import FGSMRandomStart
from datamodules import SyntheticShapes
from lightning_modules import RobustClassifier
from losses import AttributionStability, FastAdversarialTraining, InputGradientPenalty, Part, WeightedSum


@pytest.mark.slow
def test_composed_second_order_objective_trains_under_ddp(tmp_path) -> None:
    objective = WeightedSum(
        [
            Part(FastAdversarialTraining(FGSMRandomStart(eps=0.1), co_check_every=1, co_check_size=4)),
            Part(InputGradientPenalty(), 0.1),
            Part(AttributionStability(attack=FGSMRandomStart(eps=0.1))),
        ]
    )
    model = RobustClassifier(
        num_classes=2, input_shape=(1, 16, 16), backbone_kwargs={"width": 4, "hidden": 8}, objective=objective
    )
    data = SyntheticShapes(image_size=16, num_classes=2, train_size=32, val_size=8, test_size=8, batch_size=8)
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_steps=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    before = [p.detach().clone() for p in model.parameters()]
    trainer.fit(model, data)  # "Trainer.fit stopped: max_steps=2 reached" means both steps ran
    # ddp_spawn copies the trained weights back to this process; they must have moved.
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


@pytest.mark.slow
def test_awp_with_weight_averaging_trains_under_lightning_ddp(tmp_path) -> None:
    """AWP inside Lightning's DDP-wrapped training step (its ascent all-reduce, DDP's own
    all-reduce of ∇L(w + v)) and the EMA callback, two processes, two steps and a validation."""
    from attacks import PGD
    from callbacks import WeightAverage
    from losses import AWP, TRADES

    model = RobustClassifier(
        num_classes=2,
        input_shape=(1, 16, 16),
        backbone_kwargs={"width": 4, "hidden": 8, "batch_norm": True},
        objective=AWP(TRADES(attack=PGD(eps=0.1, step_size=0.05, steps=2)), gamma=0.01),
        eval_attack=PGD(eps=0.1, step_size=0.05, steps=2, seed=0),
    )
    data = SyntheticShapes(image_size=16, num_classes=2, train_size=32, val_size=8, test_size=8, batch_size=8)
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_steps=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        val_check_interval=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[WeightAverage(decay=0.5)],
    )
    before = [p.detach().clone() for p in model.parameters()]
    trainer.fit(model, data)
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
