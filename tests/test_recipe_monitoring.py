"""Every recipe in configs/ composes (its ``callbacks: <file>`` resolved next to it) and monitors
explanations while it trains: the explanation monitor, a cheap robustness curve and the sanity
check, in the recipe's threat model; and a step of each runs with those callbacks firing.

The configs/synthetic recipes train with their callbacks as written in test_synthetic_recipes.py;
here the MNIST, Fashion-MNIST and CIFAR-10 recipes run one step on tiny files of their format,
with the callbacks' cadence set to every step and their probe sets shrunk to 4 images (the
recipes' own cadences, every 500 steps or every epoch, would not fire in one step).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import train
from tests.data_files import write_cifar, write_mnist
from tests.recipes import CONFIGS, MONITORS, callback_list, recipe_path, small_probes

RECIPES = sorted(
    str(p.relative_to(CONFIGS).with_suffix("")) for p in CONFIGS.rglob("*.yaml") if not p.stem.startswith("callbacks")
)
DATASETS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
# One recipe of each family in the default run (selection on val/acc_pgd and on val/acc, a
# reproduction recipe with its CSV logger, a Wide ResNet); the others are marked slow.
DEFAULT = {"mnist/pgd_at_madry", "fashion_mnist/erm", "cifar10/trades_awp_wrn34_10"}
SHRUNK_BACKBONE = {"wrn34_10": "{depth: 10, widen_factor: 1}", "preact_resnet18": "{width: 8}"}


def test_composed_recipes_name_files_that_exist() -> None:
    named = {
        recipe: yaml.safe_load(recipe_path(recipe).read_text())["trainer"]["callbacks"]
        for recipe in RECIPES
    }
    composed = {recipe: name for recipe, name in named.items() if isinstance(name, str)}
    # Only the quickstart (self-contained on purpose) and a recipe with an extra callback inline.
    assert set(named) - set(composed) == {"quickstart", "synthetic/pgd_at_ema"}
    for recipe, name in composed.items():
        assert (recipe_path(recipe).parent / name).is_file(), (recipe, name)


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_monitors_in_its_threat_model(recipe: str) -> None:
    config = yaml.safe_load(recipe_path(recipe).read_text())
    eps = config["model"]["eval_attack"]["init_args"]["eps"]
    callbacks = callback_list(recipe)
    paths = [c["class_path"] for c in callbacks]
    assert paths[0] == "callbacks.ModelCheckpoint" and set(MONITORS) <= set(paths), paths
    assert "callbacks.PreemptionCheckpoint" in paths
    by_class = {c["class_path"]: c.get("init_args", {}) for c in callbacks if not c.get("init_args", {}).get("at_fit_end")}
    monitor = by_class["callbacks.ExplanationMonitor"]
    assert {"saliency", "integrated_gradients"} <= set(monitor["methods"])
    noisy = [m for m in monitor["metrics"] if m.endswith("@noise")]
    assert noisy and all(monitor["metric_options"][m]["eps"] == pytest.approx(eps) for m in noisy)
    curve = by_class["callbacks.RobustnessEvaluator"]
    assert max(curve["eps"]) >= eps and 0.0 in curve["eps"]
    for attack in curve["attacks"]:  # cheap: a few PGD steps, ε and step as the recipe's threat model
        assert attack["class_path"] == "attacks.PGD" and attack["init_args"]["steps"] <= 10
        assert attack["init_args"]["eps"] == pytest.approx(eps)
        assert attack["init_args"]["step_size"] == pytest.approx(eps / 4)
    # Periodic, not every step: every 500 steps or more on (Fashion-)MNIST, every epoch elsewhere.
    for options in (monitor, curve):
        assert options.get("every_n_steps", 500) >= 500 and options.get("every_n_epochs", 1) >= 1
    assert by_class["callbacks.SanityCheck"]["methods"]


def _writer(dataset: str):
    if dataset == "cifar10":
        return lambda root: write_cifar(root, 10, n_per_batch=2)
    return lambda root: write_mnist(root, DATASETS[dataset], n_train=8, n_test=4)


def _shrunk(node: Any) -> Any:
    """Every attack and Riemann sum cut to one step."""
    if isinstance(node, dict):
        return {k: (1 if k in ("steps", "riemann_steps", "attack_riemann_steps") else _shrunk(v)) for k, v in node.items()}
    return [_shrunk(v) for v in node] if isinstance(node, list) else node


@pytest.mark.parametrize(
    "recipe",
    [r if r in DEFAULT else pytest.param(r, marks=pytest.mark.slow) for r in RECIPES if not r.startswith(("synthetic", "quickstart"))],
)
def test_recipe_trains_a_step_with_its_monitoring(recipe: str, tmp_path: Path) -> None:
    dataset = recipe.split("/")[0]
    data_dir = tmp_path / "data"
    n_train = int(_writer(dataset)(data_dir)["train"][1].shape[0])
    config = yaml.safe_load(recipe_path(recipe).read_text())
    extra = []
    if config["model"]["backbone"] in SHRUNK_BACKBONE:
        extra.append(f"--model.backbone_kwargs={SHRUNK_BACKBONE[config['model']['backbone']]}")
    if config["model"]["objective"]["class_path"] == "losses.AWP":
        extra.append('--model.objective.init_args.start_step=0')
    cli = train.main(
        ["fit", "--config", str(recipe_path(recipe)), f"--data.init_args.data_dir={data_dir}",
         f"--data.init_args.val_size={n_train - 4}", "--data.init_args.batch_size=4",
         "--data.init_args.eval_batch_size=4", "--data.init_args.num_workers=0",
         f"--model.objective={json.dumps(_shrunk(config['model']['objective']))}",
         "--model.eval_attack.init_args.steps=1",
         small_probes(recipe, every_step=True),
         "--trainer.max_steps=1", "--trainer.max_epochs=1", "--trainer.limit_val_batches=1",
         "--trainer.num_sanity_val_steps=0", "--trainer.logger=pytorch_lightning.loggers.CSVLogger",
         f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}", f"--trainer.default_root_dir={tmp_path / 'runs'}",
         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", *extra]
    )  # fmt: skip
    assert cli.trainer.global_step == 1
    # The explanation monitor, the robustness curve and the sanity check each ran on the trained model.
    ran = {type(c).__name__: c.last for c in cli.trainer.callbacks if type(c).__name__ in {m.split(".")[1] for m in MONITORS}}
    assert set(ran) == {m.split(".")[1] for m in MONITORS} and all(v is not None for v in ran.values()), ran
    assert {f"expl/{m}/spearman@noise" for m in ("saliency", "integrated_gradients")} <= set(ran["ExplanationMonitor"].values)


def _holds(got: Any, want: Any) -> bool:
    """``got`` has every key of ``want`` with the same value (recursively), perhaps more keys."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and _holds(got[k], v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(_holds, got, want))
    return got == want


def test_saved_config_holds_the_whole_list_and_appending_keeps_it(tmp_path: Path) -> None:
    """What the run saves (config.yaml, the checkpoint's recipe) is the parser's dump: the list
    read from callbacks.yaml, not its file name; ``+=`` on the command line appends to it."""
    write_mnist(tmp_path, "MNIST", n_train=140, n_test=4)
    cli = train.main(
        ["--config", str(recipe_path("mnist/pgd_at")), f"--data.init_args.data_dir={tmp_path}",
         "--data.init_args.val_size=130", "--trainer.logger=false",
         "--trainer.callbacks+=pytorch_lightning.callbacks.LearningRateMonitor"],
        run=False,
    )  # fmt: skip
    saved = yaml.safe_load(cli.parser.dump(cli.config))["trainer"]["callbacks"]
    written = callback_list("mnist/pgd_at")
    assert [c["class_path"] for c in saved] == [c["class_path"] for c in written] + [
        "pytorch_lightning.callbacks.LearningRateMonitor"
    ]
    for got, want in zip(saved, written):  # every option of the file, as written (defaults filled in)
        assert _holds(got, want), (got, want)
    assert [type(c).__name__ for c in cli.trainer.callbacks if type(c).__name__ in ("ExplanationMonitor", "SanityCheck")] == [
        "ExplanationMonitor", "SanityCheck"
    ]
