"""A method defined outside the package is one class statement away from every list and command.

The method here, Φ(x) = |∂f_t/∂x|^power, is defined in this file (inside a fixture, so that its
registration is undone after each test and the other tests' default lists stay as they are).
On one-channel images it ranks pixels as saliency does, which gives the report a closed form.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import train
from attributions import (
    AttributionMethod,
    GradientAttribution,
    IntegratedGradients,
    Saliency,
    SmoothGrad,
    attribution_names,
    build_attribution,
)
from callbacks import ExplanationMonitor, SanityCheck
from cli.report import build_parser
from common.modes import ModelMode
from datamodules import SyntheticShapes
from report import FILES, default_methods
from tests.recipes import without_monitors
from tests.test_report import tiny_fit

REPO = Path(__file__).resolve().parents[1]
NAME = "gradient_power"
#: The default lists before any method of a project's own (as they were written out by hand).
REPORT_DEFAULTS = (
    "saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "grad_cam", "guided_backprop",
    "lrp", "deeplift", "occlusion", "grad_cam_plus_plus", "score_cam", "edge", "random",
)  # fmt: skip
CALLBACK_DEFAULTS = ("saliency", "integrated_gradients")


@pytest.fixture
def method_class(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[AttributionMethod]]:
    """Define the method (registering it) and undo the registration afterwards. It is also set
    as this module's ``GradientPower``, so that its import path resolves as it would for a class
    at module level of a project's own package."""
    registry = AttributionMethod.registry
    monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    monkeypatch.setattr(AttributionMethod, "default_lists", dict(AttributionMethod.default_lists))

    class GradientPower(GradientAttribution, name=NAME, default_in=("report", "callbacks")):
        """Φ(x) = |∂f_t/∂x|^power.

        Args:
            power: the exponent, > 0.
            create_graph: keep the graph.
            model_mode: "eval", "train" or None.
        """

        def __init__(self, power: float = 2.0, create_graph: bool = False, model_mode: ModelMode | None = "eval") -> None:
            super().__init__(create_graph, model_mode)
            if not power > 0:
                raise ValueError(f"power must be > 0, got {power}")
            self.power = float(power)

        def attribute(self, model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
            x = self._input(inputs)
            return self.input_gradient(model, x, target).abs() ** self.power

    monkeypatch.setattr(sys.modules[__name__], "GradientPower", GradientPower, raising=False)
    yield GradientPower


def _small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))


def test_the_class_statement_puts_the_name_in_the_registry_and_in_the_default_lists(method_class: type) -> None:
    assert attribution_names()[-1] == NAME
    assert default_methods() == (*REPORT_DEFAULTS, NAME)
    assert list(ExplanationMonitor().methods) == list(SanityCheck().methods) == [*CALLBACK_DEFAULTS, NAME]
    help_text = build_parser().format_help()
    assert NAME in help_text  # the report's --help lists it among the methods
    # By name and by import path, options checked by the class; the result is |saliency|^power.
    model, x = _small_cnn(), torch.rand(2, 1, 8, 8)
    target = torch.tensor([0, 2])
    cube = build_attribution(f"{__name__}.GradientPower", power=3)
    assert isinstance(cube, method_class)
    torch.testing.assert_close(cube(model, x, target), Saliency()(model, x, target) ** 3)
    with pytest.raises(ValueError, match="power must be > 0"):
        build_attribution(NAME, power=0)


def test_without_the_name_the_lists_are_as_before() -> None:
    """The fixture's registration does not outlive its test; today's default lists, exactly."""
    assert NAME not in attribution_names()
    assert default_methods() == REPORT_DEFAULTS
    assert list(ExplanationMonitor().methods) == list(SanityCheck().methods) == list(CALLBACK_DEFAULTS)


def test_a_callback_names_it_in_a_recipe_and_smoothgrad_wraps_it_or_a_class_path_node(
    method_class: type, tmp_path: Path
) -> None:
    callbacks = [
        {
            "class_path": "callbacks.ExplanationMonitor",
            "init_args": {
                "methods": [NAME, "smoothgrad", "vargrad"],
                "method_options": {
                    NAME: {"power": 3},
                    "smoothgrad": {"n_samples": 2, "seed": 0,
                                   "base": {"class_path": "attributions.IntegratedGradients", "init_args": {"steps": 4}}},
                    "vargrad": {"n_samples": 2, "seed": 0, "base": NAME, "base_kwargs": {"power": 3}},
                },
                "metrics": ["spearman@noise"],
                "probe_size": 4,
                "panels": 0,
            },
        }
    ]  # fmt: skip
    cli = train.main(
        ["--config", str(REPO / "configs" / "synthetic" / "erm.yaml"), f"--trainer.callbacks={json.dumps(callbacks)}",
         "--trainer.logger=false", "--data.init_args.train_size=32", "--data.init_args.val_size=8",
         "--data.init_args.test_size=8", "--model.backbone_kwargs={width: 4, hidden: 16}"],
        run=False,
    )  # fmt: skip
    (monitor,) = [c for c in cli.trainer.callbacks if isinstance(c, ExplanationMonitor)]
    methods = monitor.methods
    assert isinstance(methods[NAME], method_class) and methods[NAME].power == 3
    assert isinstance(methods["smoothgrad"], SmoothGrad) and isinstance(methods["smoothgrad"].base, IntegratedGradients)
    assert methods["smoothgrad"].base.steps == 4
    assert isinstance(methods["vargrad"].base, method_class) and methods["vargrad"].base.power == 3
    # And it runs: the monitor scores it on a probe set.
    probe = SyntheticShapes(num_classes=4, train_size=32, val_size=8, test_size=8).probe_batch(4, seed=0)
    monitor.use_probe(probe)
    values = monitor.evaluate(cli.model.model.eval()).values
    assert set(values) == {f"expl/{m}/spearman@noise" for m in methods}


def test_the_report_computes_it_by_import_path(method_class: type, tmp_path: Path) -> None:
    """One-channel images: |∂f/∂x|³ orders the pixels as saliency's |∂f/∂x| does, so the deletion
    curve, and its area, are the same."""
    fit = [*tiny_fit(tmp_path / "run"), "--trainer.max_epochs=1", "--data.init_args.train_size=64", without_monitors("synthetic/erm")]
    cli = train.main(fit)
    checkpoint = tmp_path / "final.ckpt"
    cli.trainer.save_checkpoint(checkpoint)
    out = tmp_path / "report"
    train.main(
        ["report", "--no_progress", "--ckpt_path", str(checkpoint), "--out_dir", str(out),
         "--methods", f"[{__name__}.GradientPower, saliency]", "--method_options", f"{{{NAME}: {{power: 3}}}}",
         "--metrics", "[deletion_auc]", "--num_examples", "6", "--figure_examples", "2", "--accuracy_examples", "4",
         "--attacks", "[pgd-ce]", "--attack_steps", "1", "--eps", "[0.1]"]
    )  # fmt: skip
    record = json.loads((out / FILES["json"]).read_text())
    assert list(record["metrics"]) == [NAME, "saliency"]
    assert record["settings"]["methods"][NAME] == {"power": 3}
    ours, saliency = (record["metrics"][m]["deletion_auc"]["value"] for m in (NAME, "saliency"))
    assert isinstance(ours, float) and ours == pytest.approx(saliency, abs=1e-6)


def test_an_unknown_name_lists_the_registered_ones_and_a_taken_name_is_refused(method_class: type) -> None:
    with pytest.raises(ValueError, match=rf"method must be one of \(.*'{NAME}'.*\).*got 'gradient_powr'"):
        build_attribution("gradient_powr")
    with pytest.raises(ValueError, match=rf"methods must be among \(.*'{NAME}'.*\).*got 'gradient_powr'"):
        ExplanationMonitor(methods=["gradient_powr"])
    for taken in (NAME, "saliency"):
        with pytest.raises(ValueError, match=f"name '{taken}' is already registered"):

            class Impostor(Saliency, name=taken):  # noqa: F841
                pass

    assert AttributionMethod.registry.entry(NAME).cls is method_class  # the first class keeps its name
    with pytest.raises(ValueError, match=r"default_in of method 'other' must be a list among \('report', 'callbacks'\)"):

        class Other(Saliency, name="other", default_in=("reports",)):  # noqa: F841
            pass

    assert "other" not in attribution_names()
