"""The reproduction recipes (configs/{mnist,fashion_mnist}/*_{wong,madry,zhang,ismail,chen}.yaml)
state each paper's protocol, resolve through the CLI, schedule the learning rate as the
authors' code does, and write each run where the results script looks for it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import train
from datamodules import MNIST
from tests.data_files import write_mnist
from tests.recipes import callback_list, small_probes

REPO = Path(__file__).resolve().parents[1]
TRAIN_IMAGES = 60_000
RECIPES = sorted(
    str(p.relative_to(REPO / "configs").with_suffix(""))
    for folder in ("mnist", "fashion_mnist")
    for p in (REPO / "configs" / folder).glob("*_*.yaml")
    if p.stem.rsplit("_", 1)[-1] in ("wong", "madry", "zhang", "ismail", "chen")
)
EPS = {"mnist": 0.3, "fashion_mnist": 0.1}


def load(recipe: str) -> dict:
    return yaml.safe_load((REPO / "configs" / f"{recipe}.yaml").read_text())


def attack_settings(config: dict) -> list[dict]:
    """init_args of every attack node inside the objective."""
    found: list[dict] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if str(node.get("class_path", "")).startswith("attacks."):
                found.append(node["init_args"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config["model"]["objective"])
    return found


# (backbone, batch size, optimiser, lr, length) of each protocol; the objective is checked below.
PROTOCOLS = {
    "fgsm_rs_wong": ("wong2020_mnist", 100, "torch.optim.Adam", 0.005, {"max_epochs": 10}),
    "pgd_at_madry": ("wong2020_mnist", 50, "torch.optim.Adam", 1e-4, {"max_steps": 100_000}),
    "pgd_at_wong": ("wong2020_mnist", 50, "torch.optim.Adam", 1e-4, {"max_steps": 100_000}),
    "trades_zhang": ("zhang2019_mnist", 128, "torch.optim.SGD", 0.01, {"max_epochs": 100}),
    "saliency_guided_ismail": ("ismail2021_mnist", 512, "torch.optim.Adadelta", 1.0, {"max_epochs": 100}),
    "erm_ismail": ("ismail2021_mnist", 512, "torch.optim.Adadelta", 1.0, {"max_epochs": 100}),
    "erm_chen": ("madry2018_mnist", 50, "torch.optim.Adam", 1e-4, {"max_steps": 25_000}),
    "ig_norm_chen": ("madry2018_mnist", 50, "torch.optim.Adam", 1e-4, {"max_steps": 100_000}),
    "ig_sum_norm_chen": ("madry2018_mnist", 50, "torch.optim.Adam", 1e-4, {"max_steps": 100_000}),
}


def test_every_row_has_its_recipe() -> None:
    assert RECIPES == sorted(
        [f"mnist/{row}" for row in PROTOCOLS]
        + [f"fashion_mnist/{row}" for row in PROTOCOLS if row not in ("saliency_guided_ismail", "erm_ismail", "pgd_at_wong")]
    )


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_states_the_papers_protocol(recipe: str) -> None:
    dataset, row = recipe.split("/")
    config = load(recipe)
    backbone, batch, optimizer, lr, length = PROTOCOLS[row]
    model, data, trainer = config["model"], config["data"]["init_args"], config["trainer"]
    assert model["backbone"] == backbone and data["batch_size"] == batch
    assert model["optimizer"] == {"class_path": optimizer, "init_args": {**model["optimizer"]["init_args"], "lr": lr}}
    assert {k: trainer.get(k) for k in length} == length
    # Raw [0, 1] pixels for every network but Ismail et al.'s, whose code normalises.
    assert data["normalize"] is (backbone == "ismail2021_mnist")
    # Madry et al.'s and Chen et al.'s TensorFlow loader trains on 55 000 images.
    assert data["val_size"] == (5000 if row.endswith(("madry", "chen")) or row == "pgd_at_wong" else 1000)
    # Every attack of the objective works in the dataset's threat model.
    eps = EPS[dataset]
    attacks = attack_settings(config)
    assert all(a["eps"] == eps for a in attacks) and config["model"]["eval_attack"]["init_args"]["eps"] == eps
    objective = model["objective"]
    if row == "fgsm_rs_wong":
        assert attacks == [{"eps": eps, "step_size": 1.25 * eps, "clip_start": False}]  # unclipped start, as their MNIST code
    if row in ("pgd_at_madry", "trades_zhang", "ig_norm_chen", "ig_sum_norm_chen"):
        steps = 20 if dataset == "fashion_mnist" and row != "trades_zhang" else 40
        assert attacks == [{"eps": eps, "step_size": 0.01, "steps": steps, "random_start": True, **(
            {"model_mode": "eval"} if row == "trades_zhang" else {}
        )}]  # fmt: skip
    if row == "pgd_at_wong":  # Madry et al.'s attack with Wong et al.'s per-example early stop
        assert attacks == [{"eps": eps, "step_size": 0.01, "steps": 40, "random_start": True, "early_stop": True}]
    if row == "trades_zhang":
        assert objective["init_args"]["beta"] == 1.0 and model["optimizer"]["init_args"]["momentum"] == 0.9
    if row == "saliency_guided_ismail":
        assert objective["init_args"] == {
            "kl_weight": 1.0, "mask_fraction": 0.5, "replacement": "uniform", "saliency": "signed", "mask_unit": "pixel"
        }  # fmt: skip
    if row == "ig_norm_chen":
        erm, ig = objective["init_args"]["parts"]
        assert erm == {"objective": {"class_path": "losses.ERM"}, "weight": 1.0} and ig["weight"] == 1.0
        assert {k: v for k, v in ig["objective"]["init_args"].items() if k != "attack"} == {
            "riemann_steps": 50, "attack_riemann_steps": 10
        }  # fmt: skip  (λ = 1 is the part's weight, above)
    if row == "ig_sum_norm_chen":
        assert {k: v for k, v in objective["init_args"].items() if k != "attack"} == {
            "beta": 0.1, "riemann_steps": 50, "attack_riemann_steps": 10
        }  # fmt: skip


@pytest.mark.parametrize("recipe", RECIPES)
def test_each_run_writes_into_its_own_folder(recipe: str) -> None:
    """benchmarks/reproduction/runs/<dataset>/<row>/seed<k>/: config, metrics.csv, checkpoints."""
    trainer = load(recipe)["trainer"]
    logger = trainer["logger"]
    assert logger["class_path"] == "pytorch_lightning.loggers.CSVLogger"
    assert logger["init_args"] == {"save_dir": "benchmarks/reproduction/runs", "name": recipe, "version": "seed0"}
    checkpoint = callback_list(recipe)[0]
    assert checkpoint["class_path"] == "callbacks.ModelCheckpoint" and checkpoint["init_args"]["save_last"]
    assert load(recipe)["seed_everything"] == 0


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_mnist(root, "MNIST", n_train=24, n_test=8)
    write_mnist(root, "FashionMNIST", n_train=24, n_test=8)
    return root


def resolve(recipe: str, data_dir: Path, *extra: str) -> train.RobustLensCLI:
    return train.main(
        ["--config", str(REPO / "configs" / f"{recipe}.yaml"), f"--data.init_args.data_dir={data_dir}",
         "--data.init_args.val_size=8", "--trainer.logger=false", *extra],
        run=False,
    )  # fmt: skip


def test_cyclic_learning_rate_is_wongs_per_step_schedule(data_dir: Path) -> None:
    """lr at step i of epoch e = interp(e + (i + 1)/n, [0, 2/5·E, E], [0, lr_max, 0]) (train_mnist.py)."""
    config = load("mnist/fgsm_rs_wong")
    epochs, batch = config["trainer"]["max_epochs"], config["data"]["init_args"]["batch_size"]
    steps_per_epoch = math.ceil((TRAIN_IMAGES - config["data"]["init_args"]["val_size"]) / batch)
    cli = resolve("mnist/fgsm_rs_wong", data_dir)
    scheduler_config = cli.model.configure_optimizers()
    optimizer, scheduler = scheduler_config["optimizer"], scheduler_config["lr_scheduler"]["scheduler"]
    assert scheduler_config["lr_scheduler"]["interval"] == "step"
    assert scheduler.total_steps == epochs * steps_per_epoch
    optimizer.step()  # no gradients: changes nothing, and tells the scheduler the order is right
    ours = []
    for _ in range(scheduler.total_steps):
        ours.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    t = np.arange(1, scheduler.total_steps + 1) / steps_per_epoch  # epoch + (i + 1) / n
    wong = np.interp(t, [0, epochs * 2 // 5, epochs], [0, 5e-3, 0])
    # One step apart at most: |Δlr| ≤ lr_max / (steps of the rising phase).
    assert np.abs(np.array(ours) - wong).max() <= 5e-3 / (0.4 * scheduler.total_steps) * 1.01
    assert all(group.get("betas") == (0.9, 0.999) for group in optimizer.param_groups)  # β₁ not cycled


def test_trades_learning_rate_decays_as_adjust_learning_rate(data_dir: Path) -> None:
    """lr × 0.1 from (1-based) epochs 55, 75 and 90 (train_trades_mnist.py)."""

    def authors(epoch: int) -> float:  # epoch counted from 1
        return 0.01 * (0.1 if epoch >= 55 else 1) * (0.1 if epoch >= 75 else 1) * (0.1 if epoch >= 90 else 1)

    cli = resolve("mnist/trades_zhang", data_dir)
    scheduler_config = cli.model.configure_optimizers()
    optimizer, scheduler = scheduler_config["optimizer"], scheduler_config["lr_scheduler"]["scheduler"]
    assert scheduler_config["lr_scheduler"]["interval"] == "epoch"
    for epoch in range(cli.trainer.max_epochs):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(authors(epoch + 1), rel=1e-9), epoch
        optimizer.step()
        scheduler.step()


def test_normalize_false_makes_the_first_layer_the_identity(data_dir: Path) -> None:
    dm = MNIST(data_dir=str(data_dir), normalize=False)
    assert (dm.mean, dm.std) == ((0.0,), (1.0,))
    assert (MNIST(data_dir=str(data_dir)).mean, MNIST(data_dir=str(data_dir)).std) == ((0.1307,), (0.3081,))
    model = resolve("mnist/pgd_at_madry", data_dir).model.model
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(model(x), model.net(x))


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_trains_a_step_on_tiny_files(recipe: str, data_dir: Path, tmp_path: Path) -> None:
    """The whole recipe, one training batch of 4 images and one validation batch, attacks and
    Riemann sums cut to 2 steps."""
    def shrunk(node: object) -> object:
        if isinstance(node, dict):
            return {k: (2 if k in ("steps", "riemann_steps", "attack_riemann_steps") else shrunk(v)) for k, v in node.items()}
        return [shrunk(v) for v in node] if isinstance(node, list) else node

    objective = json.dumps(shrunk(load(recipe)["model"]["objective"]))
    shrink = ["--model.eval_attack.init_args.steps=2", f"--model.objective={objective}"]
    cli = train.main(
        ["fit", "--config", str(REPO / "configs" / f"{recipe}.yaml"), f"--data.init_args.data_dir={data_dir}",
         "--data.init_args.val_size=20", "--data.init_args.batch_size=4", "--data.init_args.eval_batch_size=8",
         "--trainer.max_steps=1", "--trainer.max_epochs=1", "--trainer.limit_val_batches=1",
         "--trainer.num_sanity_val_steps=0", f"--trainer.logger.init_args.save_dir={tmp_path}",
         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", small_probes(recipe), *shrink]
    )  # fmt: skip
    assert cli.trainer.global_step == 1
    run = tmp_path / recipe / "seed0"
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
