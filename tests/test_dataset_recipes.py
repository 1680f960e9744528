"""The dataset recipes parse to the published settings and train on tiny files of each format."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import train
from callbacks import CHECKPOINT_KEY
from tests.data_files import write_cifar, write_mnist
from tests.recipes import small_probes

REPO = Path(__file__).resolve().parents[1]
WRITERS = {
    "mnist": lambda root: write_mnist(root, "MNIST", n_train=24, n_test=8),
    "fashion_mnist": lambda root: write_mnist(root, "FashionMNIST", n_train=24, n_test=8),
    "cifar10": lambda root: write_cifar(root, 10, n_per_batch=4),
}


def resolved(recipe: str, data_dir: Path, *extra: str) -> dict:
    """The recipe as the CLI resolves it, with ``data_dir`` pointing at tiny files."""
    cli = train.main(
        ["--config", str(REPO / "configs" / recipe), f"--data.init_args.data_dir={data_dir}", *extra], run=False
    )
    return yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))


def attack_args(node: dict) -> dict:
    assert node["class_path"] == "attacks.PGD"
    return node["init_args"]


@pytest.mark.parametrize("dataset, eps", [("mnist", 0.3), ("fashion_mnist", 0.1)])
def test_mnist_recipes_follow_madry_et_al(tmp_path: Path, dataset: str, eps: float) -> None:
    WRITERS[dataset](tmp_path)
    config = resolved(f"{dataset}/pgd_at.yaml", tmp_path)
    model = config["model"]
    assert model["objective"]["class_path"] == "losses.PGDAdversarialTraining"
    train_attack = attack_args(model["objective"]["init_args"]["attack"])
    assert (train_attack["eps"], train_attack["step_size"], train_attack["steps"]) == (eps, 0.01, 40)
    assert train_attack["random_start"] and train_attack["norm"] == "linf"
    eval_attack = attack_args(model["eval_attack"])
    assert (eval_attack["eps"], eval_attack["step_size"], eval_attack["steps"]) == (eps, 0.01, 40)
    assert model["backbone"] == "small_cnn" and model["backbone_kwargs"] == {"width": 32, "hidden": 1024}
    assert model["optimizer"]["class_path"] == "torch.optim.Adam" and model["optimizer"]["init_args"]["lr"] == 1e-4
    assert config["data"]["init_args"]["batch_size"] == 50 and config["trainer"]["max_steps"] == 100000


def test_cifar10_recipe_follows_rice_et_al(tmp_path: Path) -> None:
    WRITERS["cifar10"](tmp_path)
    config = resolved("cifar10/pgd_at.yaml", tmp_path)
    model = config["model"]
    assert model["backbone"] == "preact_resnet18"
    for node in (model["objective"]["init_args"]["attack"], model["eval_attack"]):
        args = attack_args(node)
        assert args["eps"] == pytest.approx(8 / 255, abs=1e-12)
        assert args["step_size"] == pytest.approx(2 / 255, abs=1e-12)
        assert args["steps"] == 10 and args["norm"] == "linf" and args["random_start"]
    assert model["objective"]["init_args"]["attack"]["init_args"]["model_mode"] == "train"
    optimizer = model["optimizer"]
    assert optimizer["class_path"] == "torch.optim.SGD"
    sgd = {k: optimizer["init_args"][k] for k in ("lr", "momentum", "weight_decay")}
    assert sgd == {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}
    assert model["lr_scheduler"]["class_path"] == "torch.optim.lr_scheduler.MultiStepLR"
    assert model["lr_scheduler"]["init_args"]["milestones"] == [100, 150] and model["scheduler_interval"] == "epoch"
    assert config["trainer"]["max_epochs"] == 200 and config["data"]["init_args"]["batch_size"] == 128
    data = config["data"]["init_args"]
    assert data["augment"] and data["horizontal_flip"]
    assert data["crop_padding"] == 4 and data["padding_mode"] == "reflect"


def _flatten(node: object, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(node, list):
        out = {}
        for i, value in enumerate(node):
            out.update(_flatten(value, f"{prefix}[{i}]"))
        return out
    return {prefix: node}


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist", "cifar10"])
def test_erm_recipe_differs_from_pgd_at_only_in_objective_and_selection(tmp_path: Path, dataset: str) -> None:
    WRITERS[dataset](tmp_path)
    erm, pgd = (_flatten(resolved(f"{dataset}/{name}.yaml", tmp_path)) for name in ("erm", "pgd_at"))
    differing = {k for k in erm.keys() | pgd.keys() if erm.get(k) != pgd.get(k)}
    allowed = (
        "model.objective",
        "trainer.logger.init_args.name",
        "trainer.callbacks[0].init_args.monitor",
        "trainer.callbacks[0].init_args.filename",
    )
    assert differing and all(k.startswith(allowed) for k in differing), sorted(differing)
    assert erm["model.objective.class_path"] == "losses.ERM"


@pytest.mark.parametrize(
    "recipe, write, shrink",
    [
        ("mnist/pgd_at.yaml", lambda root: write_mnist(root, "MNIST", n_train=8, n_test=4), []),
        ("fashion_mnist/pgd_at.yaml", lambda root: write_mnist(root, "FashionMNIST", n_train=8, n_test=4), []),
        (
            "cifar10/pgd_at.yaml",
            lambda root: write_cifar(root, 10, n_per_batch=2),
            ['--model.backbone_kwargs={"width": 8}'],
        ),
    ],
    ids=["mnist", "fashion_mnist", "cifar10"],
)
def test_recipe_trains_a_step_on_tiny_files(tmp_path: Path, recipe: str, write, shrink: list[str]) -> None:
    """One training batch (4 images) and one validation batch; attacks cut to 2 steps."""
    data_dir = tmp_path / "data"
    n_train = int(write(data_dir)["train"][1].shape[0])
    cli = train.main(
        [
            "fit",
            "--config",
            str(REPO / "configs" / recipe),
            f"--data.init_args.data_dir={data_dir}",
            f"--data.init_args.val_size={n_train - 4}",
            "--data.init_args.batch_size=4",
            "--data.init_args.eval_batch_size=8",
            "--data.init_args.num_workers=0",
            "--model.objective.init_args.attack.init_args.steps=2",
            "--model.eval_attack.init_args.steps=2",
            "--trainer.max_steps=-1",
            "--trainer.max_epochs=1",
            "--trainer.num_sanity_val_steps=0",
            "--trainer.logger=pytorch_lightning.loggers.CSVLogger",
            f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            small_probes(recipe),
            *shrink,
        ]
    )
    assert cli.trainer.global_step == 1
    assert {"val/acc", "val/acc_pgd"} <= set(cli.trainer.callback_metrics)
    best = cli.trainer.checkpoint_callback.best_model_path
    meta = torch.load(best, map_location="cpu", weights_only=True)[CHECKPOINT_KEY]
    assert meta["data"]["class_names"] == cli.datamodule.class_names
    assert meta["data"]["input_shape"] == list(cli.datamodule.input_shape)


def test_recipe_with_missing_files_stops_before_training(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        recipe = str(REPO / "configs" / "mnist" / "pgd_at.yaml")
        train.main(["fit", "--config", recipe, f"--data.init_args.data_dir={tmp_path / 'absent'}"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid configuration: data.init_args.data_dir: data_dir" in err
    assert str(tmp_path / "absent" / "MNIST" / "raw" / "train-images-idx3-ubyte") in err
    assert not (tmp_path / "absent").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist", "cifar10"])
@pytest.mark.parametrize(
    "recipe, objective",
    [("trades", "losses.TRADES"), ("saliency_guided", "losses.SaliencyGuidedTraining"), ("pgd_at_stability", "losses.WeightedSum")],
)
def test_objective_recipes_share_everything_else_with_pgd_at(tmp_path: Path, dataset: str, recipe: str, objective: str) -> None:
    WRITERS[dataset](tmp_path)
    other, pgd = (_flatten(resolved(f"{dataset}/{name}.yaml", tmp_path)) for name in (recipe, "pgd_at"))
    differing = {k for k in other.keys() | pgd.keys() if other.get(k) != pgd.get(k)}
    allowed = (
        "model.objective",
        "trainer.logger.init_args.name",
        "trainer.callbacks[0].init_args.monitor",
        "trainer.callbacks[0].init_args.filename",
    )
    assert differing and all(k.startswith(allowed) for k in differing), sorted(differing)
    assert other["model.objective.class_path"] == objective
    # Every attack inside the objective uses the dataset's threat model.
    eps = pgd["model.objective.init_args.attack.init_args.eps"]
    for key, value in other.items():
        if key.startswith("model.objective") and key.endswith("attack.init_args.eps"):
            assert value == eps, key


# The CIFAR-10 recipes of the leaderboard methods, as their authors' code trains them:
# recipe -> (backbone, objective, its settings, attack (step, model mode), SGD (lr, weight decay),
# milestones, epochs, crop padding).
LEADERBOARD = {
    "pgd_at_wrn34_10": ("wrn34_10", "losses.PGDAdversarialTraining", {}, (2 / 255, "train"), (0.1, 5e-4), [100, 150], 200, "reflect"),
    "trades_wrn34_10": ("wrn34_10", "losses.TRADES", {"beta": 6.0}, (0.007, "eval"), (0.1, 2e-4), [74], 76, "constant"),
    "mart": ("preact_resnet18", "losses.MART", {"beta": 5.0}, (0.007, "eval"), (0.01, 3.5e-3), [74, 89, 99], 120, "constant"),
    "mart_wrn34_10": ("wrn34_10", "losses.MART", {"beta": 6.0}, (0.007, "eval"), (0.1, 7e-4), [74, 89], 90, "constant"),
    "trades_awp": (
        "preact_resnet18", "losses.AWP", {"gamma": 0.005, "start_step": 3447}, (2 / 255, "eval"), (0.1, 5e-4), [99, 149], 200, "constant"
    ),
    "trades_awp_wrn34_10": (
        "wrn34_10", "losses.AWP", {"gamma": 0.005, "start_step": 3447}, (2 / 255, "eval"), (0.1, 5e-4), [99, 149], 200, "constant"
    ),
}

SHRUNK = {"wrn34_10": "{depth: 10, widen_factor: 1}", "preact_resnet18": "{width: 8}"}  # WRN-10-1, PreAct width 8


@pytest.mark.parametrize("recipe", list(LEADERBOARD))
def test_leaderboard_recipe_follows_its_authors_and_runs_a_fast_dev_run_step(tmp_path: Path, recipe: str) -> None:
    """The recipe's resolved settings are its authors'; then one training and one validation batch
    of 4 fake CIFAR images run, with the network shrunk (WRN-10-1, PreAct ResNet-18 of width 8),
    one attack step and AWP from the first step: the recipe as written runs."""
    backbone, objective, settings, (step, mode), (lr, decay), milestones, epochs, padding = LEADERBOARD[recipe]
    path = REPO / "configs" / "cifar10" / f"{recipe}.yaml"
    written = yaml.safe_load(path.read_text())  # what the run below overrides
    written_objective = written["model"]["objective"]["init_args"]
    assert {k: written_objective[k] for k in settings} == settings
    inner = written_objective["objective"]["init_args"] if objective == "losses.AWP" else written_objective
    assert inner["attack"]["init_args"]["steps"] == 10 and written["data"]["init_args"]["batch_size"] == 128

    data_dir = tmp_path / "data"
    write_cifar(data_dir, 10, n_per_batch=2)
    prefix = "--model.objective.init_args." + ("objective.init_args." if objective == "losses.AWP" else "")
    cli = train.main(
        [
            "fit",
            "--config",
            str(path),
            f"--data.init_args.data_dir={data_dir}",
            "--data.init_args.val_size=6",
            "--data.init_args.batch_size=4",
            "--data.init_args.eval_batch_size=4",
            "--data.init_args.num_workers=0",
            f"--model.backbone_kwargs={SHRUNK[backbone]}",
            f"{prefix}attack.init_args.steps=1",
            "--model.eval_attack.init_args.steps=1",
            "--trainer.fast_dev_run=1",
            "--trainer.logger=pytorch_lightning.loggers.CSVLogger",
            f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            f"--trainer.default_root_dir={tmp_path / 'runs'}",
            small_probes(path),
        ]
        + (["--model.objective.init_args.start_step=0"] if objective == "losses.AWP" else [])
    )
    assert cli.trainer.global_step == 1
    assert {"train/loss", "val/acc_pgd"} <= set(cli.trainer.callback_metrics)
    if objective == "losses.AWP":
        assert "train/unperturbed_loss" in cli.trainer.callback_metrics

    config = yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))["fit"]
    model = config["model"]
    assert model["backbone"] == backbone and model["objective"]["class_path"] == objective
    init = model["objective"]["init_args"]
    if objective == "losses.AWP":  # TRADES-AWP: β = 6 inside
        assert init["objective"]["class_path"] == "losses.TRADES" and init["objective"]["init_args"]["beta"] == 6.0
        init = init["objective"]["init_args"]
    attack = attack_args(init["attack"])
    assert attack["eps"] == pytest.approx(8 / 255) and attack["norm"] == "linf" and attack["random_start"]
    assert attack["step_size"] == pytest.approx(step) and attack["model_mode"] == mode
    sgd = model["optimizer"]["init_args"]
    assert model["optimizer"]["class_path"] == "torch.optim.SGD"
    assert (sgd["lr"], sgd["momentum"], sgd["weight_decay"]) == (lr, 0.9, decay)
    assert model["lr_scheduler"]["init_args"] == {"milestones": milestones, "gamma": 0.1, "last_epoch": -1}
    assert config["trainer"]["max_epochs"] == epochs
    assert config["data"]["init_args"]["padding_mode"] == padding
    assert config["trainer"]["callbacks"][0]["init_args"]["monitor"] == "val/acc_pgd"
