"""One weight per part: a regulariser returns its unweighted penalty R and its λ is the weight of
its part in ``losses.WeightedSum``.

The retired ``penalty_weight`` stops before any work with a message naming the key that replaces
it, from Python and from a recipe through the command line; and every recipe in configs/ keeps
the λ it trains with (read through the command line, as a run reads it).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import train
from attacks import PGD
from losses import (
    ERM,
    AttributionStability,
    CurvaturePenalty,
    IGNorm,
    InputGradientPenalty,
    Objective,
    Part,
    WeightedSum,
)
from tests.data_files import write_cifar, write_mnist
from tests.recipes import CONFIGS, recipe_path
from tests.tiny import smooth_mlp

ATTACK = PGD(eps=0.1, step_size=0.04, steps=2, seed=3)
REGULARISERS: dict[str, Callable[..., Objective]] = {
    "InputGradientPenalty": InputGradientPenalty,
    "AttributionStability": lambda **kw: AttributionStability(attack=ATTACK, **kw),
    "CurvaturePenalty": lambda **kw: CurvaturePenalty(finite_difference_step=0.5, **kw),
    "IGNorm": lambda **kw: IGNorm(riemann_steps=3, attack=ATTACK, **kw),
}
CLASSES = {"InputGradientPenalty": InputGradientPenalty, "AttributionStability": AttributionStability,
           "CurvaturePenalty": CurvaturePenalty, "IGNorm": IGNorm}  # fmt: skip

# λ of every regulariser part of every recipe, by part name: the value each recipe trains with
# (input gradient 0.1; the curvature recipe 1, not CURE's 4; IG-NORM 1 as Chen et al.).
LAMBDAS: dict[str, dict[str, float]] = {
    "synthetic/input_gradient": {"input_gradient": 0.1},
    "synthetic/curvature": {"curvature": 1.0},
    "synthetic/ig_norm": {"ig_norm": 1.0},
    "synthetic/attribution_stability": {"attribution_stability": 1.0},
    "synthetic/pgd_at_stability": {"attribution_stability": 1.0},
    "mnist/pgd_at_stability": {"attribution_stability": 1.0},
    "fashion_mnist/pgd_at_stability": {"attribution_stability": 1.0},
    "cifar10/pgd_at_stability": {"attribution_stability": 1.0},
    "mnist/ig_norm_chen": {"ig_norm": 1.0},
    "fashion_mnist/ig_norm_chen": {"ig_norm": 1.0},
}


@pytest.fixture(autouse=True)
def no_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """train.main gets its arguments from the test, not from pytest's own command line."""
    monkeypatch.setattr(sys, "argv", ["train.py"])


@pytest.mark.parametrize("name", list(REGULARISERS))
def test_penalty_weight_is_retired_with_the_key_that_replaces_it(name: str) -> None:
    for build in (lambda: REGULARISERS[name](penalty_weight=0.5), lambda: CLASSES[name](0.5)):  # keyword, positional
        with pytest.raises(ValueError, match="^penalty_weight is retired") as error:
            build()
        message = str(error.value)
        assert name in message and "losses.WeightedSum" in message and "`weight` by 0.5" in message
    assert not hasattr(REGULARISERS[name](), "penalty_weight")


@pytest.mark.parametrize("name", list(REGULARISERS))
def test_the_part_weight_is_lambda_and_every_log_is_unweighted(name: str) -> None:
    """WeightedSum([ERM, (R, λ)]) = CE + λ·R, with R the regulariser's own loss, logged unweighted."""
    model = smooth_mlp(12)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(6, 1, 3, 4, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (6,), generator=generator)
    torch.manual_seed(0)  # attribution stability's random draw, the same in both calls
    alone = REGULARISERS[name]()(model, x, y)
    ce = torch.nn.functional.cross_entropy(model(x), y)
    regulariser = REGULARISERS[name]()
    part = regulariser.log_name
    torch.manual_seed(0)
    total = WeightedSum([Part(ERM()), Part(regulariser, 2.5)])(model, x, y)
    assert alone.loss.item() > 0
    torch.testing.assert_close(total.loss, ce + 2.5 * alone.loss)
    torch.testing.assert_close(total.logs[part], alone.loss.detach())
    torch.testing.assert_close(total.logs[f"{part}/penalty"], alone.loss.detach())


def test_a_recipe_with_penalty_weight_stops_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An old recipe (penalty_weight under the regulariser) gets the path of the key and the new one."""
    shutil.copy(CONFIGS / "synthetic" / "callbacks.yaml", tmp_path)  # the list the recipe names
    text = (CONFIGS / "synthetic" / "curvature.yaml").read_text()
    old = "              finite_difference_step: 1.5\n"
    assert text.count(old) == 1
    (tmp_path / "old.yaml").write_text(text.replace(old, "              penalty_weight: 4.0\n" + old))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as exit_info:
        train.main(["fit", "--config", str(tmp_path / "old.yaml"), "--trainer.logger=false",
                    f"--trainer.default_root_dir={tmp_path}"])  # fmt: skip
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (
        "model.objective.init_args.parts[1].objective.init_args.penalty_weight: penalty_weight is retired: "
        "CurvaturePenalty" in err
    )
    assert "multiply that part's `weight` by 4.0" in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def _regulariser_parts(node: Any) -> bool:
    """Whether a recipe's node holds a regulariser's class_path."""
    if isinstance(node, dict):
        if str(node.get("class_path", "")).removeprefix("losses.") in CLASSES:
            return True
        return any(_regulariser_parts(v) for v in node.values())
    return isinstance(node, list) and any(_regulariser_parts(v) for v in node)


def test_the_table_names_every_recipe_with_a_regulariser() -> None:
    found = {
        str(p.relative_to(CONFIGS).with_suffix(""))
        for p in CONFIGS.rglob("*.yaml")
        if _regulariser_parts(yaml.safe_load(p.read_text()))
    }
    assert found == set(LAMBDAS)
    assert not [p for p in CONFIGS.rglob("*.yaml") if "penalty_weight" in p.read_text()]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_mnist(root, "MNIST", n_train=8, n_test=4)
    write_mnist(root, "FashionMNIST", n_train=8, n_test=4)
    write_cifar(root, 10, n_per_batch=2)
    return root


@pytest.mark.parametrize("recipe", sorted(LAMBDAS))
def test_every_recipe_keeps_its_lambda(recipe: str, data_dir: Path) -> None:
    """λ of each regulariser part, as the command line builds the objective, is the part's weight
    and nothing else (no second factor left on the regulariser)."""
    extra = [] if recipe.startswith("synthetic") else [f"--data.init_args.data_dir={data_dir}"]
    if recipe.startswith("cifar10"):
        extra.append("--model.backbone_kwargs={width: 8}")  # the objective is what is read; a small net builds fast
    cli = train.main(["--config", str(recipe_path(recipe)), "--trainer.logger=false", *extra], run=False)
    objective = cli.model.objective
    assert isinstance(objective, WeightedSum)
    lambdas = {
        name: weight
        for name, weight, part in zip(objective.names, objective.weights, objective.parts)
        if type(part).__name__ in CLASSES
    }
    assert lambdas == pytest.approx(LAMBDAS[recipe])
    assert all(not hasattr(part, "penalty_weight") for part in objective.parts)
