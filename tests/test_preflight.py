"""The pre-run checks on their own: which argument a class refuses, schedules stepped for the run's
length, the run's length itself, monitors against what the model really logs, and recipes compared
for a resume. (Through the real command: tests/test_bad_input.py.)"""

from __future__ import annotations

import fnmatch
import math

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

from datamodules import SyntheticShapes
from lightning_modules import RobustClassifier
from preflight import ConfigError, continue_loggers, recipe_differences, recorded_loggers
from preflight.arguments import refused_arguments
from preflight.monitors import check_monitors
from preflight.optimization import check_optimizer, check_schedule, first_bad_learning_rate
from preflight.trainer import run_length
from tests.conftest import tiny_trainer_kwargs


def _node(class_path: str, **init_args) -> dict:
    return {"class_path": class_path, "init_args": init_args}


def _adam(lr: float = 1e-3):
    return lambda params: torch.optim.Adam(params, lr=lr)


def test_the_refused_argument_is_found_for_any_class() -> None:
    def build(arguments):
        return torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], **arguments)

    assert refused_arguments(build, torch.optim.Adam, {"lr": 0.1, "eps": -1.0, "weight_decay": 0.0}) == ["eps"]
    # Two bad values: each reset alone still fails, so neither is singled out.
    assert refused_arguments(build, torch.optim.Adam, {"lr": -0.1, "eps": -1.0}) == []


def test_optimizer_errors_name_the_field_and_what_torch_accepts() -> None:
    node = _node("torch.optim.SGD", lr=0.1, momentum=-0.5)
    with pytest.raises(ConfigError) as error:
        check_optimizer(lambda p: torch.optim.SGD(p, lr=0.1, momentum=-0.5), node)
    assert error.value.field == "model.optimizer.init_args.momentum"
    assert ">= 0" in error.value.reason
    with pytest.raises(ConfigError, match="lr must be a finite number"):
        check_optimizer(_adam(math.inf), _node("torch.optim.Adam", lr=math.inf))
    check_optimizer(_adam(), _node("torch.optim.Adam", lr=1e-3))  # a good one passes


def test_a_schedule_is_stepped_as_often_as_the_run_steps_it() -> None:
    one_cycle = _node("torch.optim.lr_scheduler.OneCycleLR", max_lr=0.1, total_steps=5)

    def factory(optimizer):
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=5)

    check_schedule(_adam(), factory, one_cycle, steps=5, interval="step")  # total_steps = the run's steps: right
    with pytest.raises(ConfigError, match=r"fails at scheduler step 6 of the 6 this run takes \(one per step\)"):
        check_schedule(_adam(), factory, one_cycle, steps=6, interval="step")


def test_a_schedule_that_makes_the_learning_rate_negative_is_refused_at_the_first_such_step() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    # gamma = -0.5: lr_k = 0.1 · (-0.5)^k, negative first at k = 1.
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=-0.5)
    assert first_bad_learning_rate(scheduler, optimizer, 10) == (1, pytest.approx(-0.05))
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.5)
    assert first_bad_learning_rate(scheduler, optimizer, 10) is None


def test_the_learning_rate_left_by_the_last_scheduler_step_is_not_checked() -> None:
    """The run steps the scheduler after each of its N optimiser steps, so the value after the
    N-th scheduler step is never used: Wong et al.'s linear one-cycle schedule ends a rounding
    error below zero there, and must pass; a run one step longer would use it."""

    def one_cycle(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.OneCycleLR:
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=0.005, total_steps=5900, pct_start=0.4, anneal_strategy="linear",
            cycle_momentum=False, div_factor=1e6, final_div_factor=1.0,
        )

    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.005)
    scheduler = one_cycle(optimizer)
    assert first_bad_learning_rate(scheduler, optimizer, 5900) is None
    assert float(optimizer.param_groups[0]["lr"]) < 0  # the unused value after the last step
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.005)
    step, lr = first_bad_learning_rate(one_cycle(optimizer), optimizer, 5901)  # type: ignore[misc]
    assert step == 5900 and lr < 0  # one step longer, and that value would be used
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=-0.5)
    assert first_bad_learning_rate(scheduler, optimizer, 1) is None  # the negative value is never used
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=-0.5)
    assert first_bad_learning_rate(scheduler, optimizer, 2) == (1, pytest.approx(-0.05))


def test_reduce_on_plateau_is_refused_with_the_alternatives() -> None:
    node = _node("torch.optim.lr_scheduler.ReduceLROnPlateau")
    with pytest.raises(ConfigError, match=r"ReduceLROnPlateau .*\(StepLR"):
        check_schedule(_adam(), torch.optim.lr_scheduler.ReduceLROnPlateau, node, steps=3, interval="epoch")


def _tiny(train_size: int = 96, batch_size: int = 16, eval_attack: bool = True):
    dm = SyntheticShapes(image_size=16, num_classes=3, train_size=train_size, val_size=32, test_size=8, batch_size=batch_size)
    kwargs = {} if eval_attack else {"eval_attack": None}
    model = RobustClassifier(
        num_classes=3, input_shape=dm.input_shape, mean=dm.mean, std=dm.std, backbone_kwargs={"width": 4, "hidden": 8},
        **kwargs,
    )  # fmt: skip
    return dm, model


@pytest.mark.parametrize(
    "trainer_args, expected",
    [
        ({"max_epochs": 3}, (6, 6, 18, 3)),
        ({"max_epochs": 3, "accumulate_grad_batches": 4}, (6, 2, 6, 3)),  # ceil(6 / 4) steps per epoch
        ({"max_epochs": 10, "max_steps": 8}, (6, 6, 8, 2)),  # max_steps ends the run inside epoch 2
        ({"max_epochs": 3, "limit_train_batches": 0.5}, (3, 3, 9, 3)),
        ({"max_epochs": -1, "max_steps": -1}, (6, 6, None, None)),
    ],
)
def test_run_length_follows_lightnings_resolution(trainer_args: dict, expected: tuple) -> None:
    dm, _ = _tiny()
    dm.setup("fit")
    trainer = pl.Trainer(**tiny_trainer_kwargs(), **trainer_args)
    length = run_length(trainer, dm)
    assert (length.batches_per_epoch, length.steps_per_epoch, length.optimizer_steps, length.epochs) == expected


def test_run_length_counts_the_optimiser_steps_a_real_fit_takes() -> None:
    dm, model = _tiny(train_size=80)  # 5 batches of 16
    dm.setup("fit")
    trainer = pl.Trainer(**tiny_trainer_kwargs(), max_epochs=2, accumulate_grad_batches=2, limit_val_batches=0)
    predicted = run_length(trainer, dm)
    trainer.fit(model, dm)
    assert trainer.global_step == predicted.optimizer_steps == 6  # ceil(5 / 2) = 3 per epoch


def test_monitorable_keys_are_what_a_real_fit_logs() -> None:
    dm, model = _tiny()
    trainer = pl.Trainer(**tiny_trainer_kwargs(), max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(model, dm)
    logged = set(trainer.callback_metrics)
    trainer.test(model, dm)
    logged |= set(trainer.callback_metrics)
    patterns = model.monitorable_keys()
    # Every logged key is declared, and every declared key (but the objective's parts) is logged.
    assert all(any(fnmatch.fnmatchcase(key, p) for p in patterns) for key in logged), (logged, patterns)
    assert {p for p in patterns if "*" not in p} <= logged
    _, without_attack = _tiny(eval_attack=False)
    assert "val/acc_pgd" not in without_attack.monitorable_keys()


def test_monitors_of_metrics_never_logged_are_refused_with_the_closest_name() -> None:
    _, model = _tiny()
    good = [("trainer.callbacks[0]", ModelCheckpoint(monitor="val/acc_pgd")), ("trainer.callbacks[1]", ModelCheckpoint(monitor="train/ce_adv"))]
    check_monitors(good, model)
    bad = good + [("trainer.callbacks[2]", EarlyStopping(monitor="val/acc_pdg"))]
    with pytest.raises(ConfigError, match="did you mean 'val/acc_pgd'") as error:
        check_monitors(bad, model)
    assert error.value.field == "trainer.callbacks[2].init_args.monitor"


RECIPE = {
    "seed_everything": 0,
    "trainer": {"max_epochs": 8},
    "model": {
        "backbone": "small_cnn",
        "backbone_kwargs": {"width": 16},
        "objective": {"class_path": "losses.PGDAdversarialTraining", "init_args": {"clean_weight": 0.0}},
    },
    "data": {"class_path": "datamodules.MNIST", "init_args": {"data_dir": "a", "batch_size": 50, "num_workers": 2}},
}


def _changed(**paths) -> dict:
    import copy

    recipe = copy.deepcopy(RECIPE)
    for path, value in paths.items():
        *parents, last = path.split("__")
        node = recipe
        for key in parents:
            node = node[key]
        node[last] = value
    return recipe


def test_recipes_differ_in_what_defines_the_run_only() -> None:
    # More epochs, another data folder, more workers: the same run.
    same = _changed(trainer__max_epochs=20, data__init_args__data_dir="b", data__init_args__num_workers=8)
    assert recipe_differences(RECIPE, same) == []
    other = _changed(model__backbone_kwargs={"width": 32}, data__init_args__batch_size=64, seed_everything=1)
    assert recipe_differences(RECIPE, other) == [
        ("seed_everything", 0, 1),
        ("model.backbone_kwargs.width", 16, 32),
        ("data.init_args.batch_size", 50, 64),
    ]
    # Another objective class: its class_path, not the arguments of two different classes.
    erm = _changed(model__objective={"class_path": "losses.ERM", "init_args": {}})
    assert recipe_differences(RECIPE, erm) == [("model.objective.class_path", "losses.PGDAdversarialTraining", "losses.ERM")]


def test_a_resumed_fit_points_its_loggers_at_the_checkpoints_runs() -> None:
    metadata = {
        "loggers": [
            {"class_path": "pytorch_lightning.loggers.wandb.WandbLogger", "version": "abc123"},
            {"class_path": "pytorch_lightning.loggers.csv_logs.CSVLogger", "version": 3},
        ]
    }
    trainer = {
        "logger": [
            {"class_path": "pytorch_lightning.loggers.WandbLogger", "init_args": {"project": "p"}},
            {"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": "x"}},
        ]
    }
    assert continue_loggers(trainer, recorded_loggers(metadata)) == ["WandbLogger id='abc123'", "CSVLogger version=3"]
    assert trainer["logger"][0]["init_args"]["id"] == "abc123" and trainer["logger"][1]["init_args"]["version"] == 3
    # A run the recipe names itself, or another kind of logger, is left alone.
    chosen = {"logger": {"class_path": "pytorch_lightning.loggers.WandbLogger", "init_args": {"id": "mine"}}}
    assert continue_loggers(chosen, recorded_loggers(metadata)) == [] and chosen["logger"]["init_args"]["id"] == "mine"
    other = {"logger": {"class_path": "pytorch_lightning.loggers.TensorBoardLogger", "init_args": {}}}
    assert continue_loggers(other, recorded_loggers(metadata)) == []
    # Checkpoints written before the loggers were recorded still name their W&B run.
    assert recorded_loggers({"wandb_run_id": "old1"}) == [{"class_path": "pytorch_lightning.loggers.WandbLogger", "version": "old1"}]


def test_backbone_arguments_filled_from_the_data_are_no_recipe_difference() -> None:
    """A class backbone's num_classes/in_channels come from the data when the model is built, so
    the checkpoint records the data's value where the recipe may hold another: not a difference
    (the data's own fields are compared)."""
    from lightning_modules import LINKED_ARGUMENTS
    from preflight.resume import FILLED_FROM_DATA, recipe_differences

    assert FILLED_FROM_DATA == tuple(f"model.backbone.init_args.{name}" for name in LINKED_ARGUMENTS)
    recorded = {"model": {"backbone": {"class_path": "a.Net", "init_args": {"in_channels": 1, "width": 8}}}}
    current = {"model": {"backbone": {"class_path": "a.Net", "init_args": {"in_channels": 3, "width": 8}}}}
    assert recipe_differences(recorded, current) == []
    current["model"]["backbone"]["init_args"]["width"] = 16
    assert recipe_differences(recorded, current) == [("model.backbone.init_args.width", 8, 16)]
