"""Tiny data, model and monitoring callbacks shared by the callback tests (a fit takes ~1 s)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from attacks import PGD
from callbacks import ExplanationMonitor, RobustnessEvaluator, SanityCheck
from datamodules import ProbeBatch, SyntheticShapes
from lightning_modules import RobustClassifier
from losses import PGDAdversarialTraining
from tests.conftest import tiny_trainer_kwargs

BATCHES_PER_EPOCH = 6  # 96 training images, batches of 16


def tiny_data(**overrides: Any) -> SyntheticShapes:
    options = dict(image_size=16, num_classes=3, train_size=96, val_size=32, test_size=8, batch_size=16)
    return SyntheticShapes(**(options | overrides))


def sgd(params) -> torch.optim.Optimizer:  # type: ignore[no-untyped-def]
    """A module-level optimiser factory (ddp_spawn pickles the module)."""
    return torch.optim.SGD(params, lr=0.05, momentum=0.9)


def tiny_model(dm: SyntheticShapes, batch_norm: bool = True) -> RobustClassifier:
    """PGD-AT with random starts from the global RNG: any draw a callback made from it, or any
    BatchNorm statistic it updated, would change the weights the fit ends with."""
    return RobustClassifier(
        num_classes=dm.num_classes,
        input_shape=dm.input_shape,
        mean=dm.mean,
        std=dm.std,
        backbone_kwargs={"width": 4, "hidden": 16, "batch_norm": batch_norm},
        objective=PGDAdversarialTraining(PGD(eps=0.1, step_size=0.05, steps=2)),
        eval_attack=PGD(eps=0.1, step_size=0.05, steps=2, seed=0),
        optimizer=sgd,
    )


def monitor(**overrides: Any) -> ExplanationMonitor:
    options: dict[str, Any] = dict(
        methods=["saliency", "integrated_gradients"],
        method_options={"integrated_gradients": {"steps": 4}},
        metrics=["topk_intersection@noise", "spearman@noise", "relevance_mass", "pointing_game"],
        probe_size=12,
        batch_size=5,  # several batches, the last one short
        panels=3,
    )
    return ExplanationMonitor(**(options | overrides))


def curve_pgd(steps: int = 3) -> PGD:
    """PGD from x on the cross-entropy, α = 2.5 ε / steps at every radius (given at ε = 0.1)."""
    return PGD(eps=0.1, step_size=0.25 / steps, steps=steps, random_start=False)


def robustness(**overrides: Any) -> RobustnessEvaluator:
    options: dict[str, Any] = dict(eps=[0.0, 0.05, 0.1], attacks=[curve_pgd()], probe_size=12, batch_size=5)
    return RobustnessEvaluator(**(options | overrides))


def sanity(**overrides: Any) -> SanityCheck:
    options: dict[str, Any] = dict(methods=["saliency", "edge"], probe_size=8, batch_size=5)
    return SanityCheck(**(options | overrides))


def all_callbacks() -> list[pl.Callback]:
    return [monitor(every_n_steps=4), robustness(every_n_epochs=1), sanity()]


def fit(callbacks: list[pl.Callback], epochs: int = 2, seed: int = 7, **trainer_kwargs: Any) -> RobustClassifier:
    """A seeded fit of the tiny model; returns the trained module."""
    pl.seed_everything(seed)
    dm = tiny_data()
    model = tiny_model(dm)
    kwargs = tiny_trainer_kwargs() | {"max_epochs": epochs, "deterministic": True} | trainer_kwargs
    pl.Trainer(**kwargs, callbacks=callbacks).fit(model, dm)
    return model


def probe_of(dm: SyntheticShapes, size: int, seed: int = 0) -> ProbeBatch:
    return dm.probe_batch(size, seed)
