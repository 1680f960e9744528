"""Bad objective settings fail at construction, or at parse time, with the field named."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable

import pytest

import train
from attacks import PGD
from losses import (
    TRADES,
    AttributionStability,
    CurvaturePenalty,
    IGNorm,
    IGSumNorm,
    InputGradientPenalty,
    SaliencyGuidedTraining,
)

CASES: list[tuple[Callable[[], object], str]] = [
    (lambda: TRADES(beta=-1.0), "beta"),
    (lambda: SaliencyGuidedTraining(kl_weight=-0.5), "kl_weight"),
    (lambda: SaliencyGuidedTraining(mask_fraction=0.0), "mask_fraction"),
    (lambda: SaliencyGuidedTraining(mask_fraction=1.0), "mask_fraction"),
    (lambda: SaliencyGuidedTraining(replacement="zeros"), "replacement"),  # type: ignore[arg-type]
    (lambda: SaliencyGuidedTraining(replacement_value=2.0), "replacement_value"),
    (lambda: SaliencyGuidedTraining(saliency="squared"), "saliency"),  # type: ignore[arg-type]
    (lambda: SaliencyGuidedTraining(mask_unit="patch"), "mask_unit"),  # type: ignore[arg-type]
    (lambda: AttributionStability(perturbation="gaussian"), "perturbation"),  # type: ignore[arg-type]
    (lambda: AttributionStability(eps_warmup_steps=-1), "eps_warmup_steps"),
    (lambda: CurvaturePenalty(finite_difference_step=0.0), "finite_difference_step"),
    (lambda: IGNorm(riemann_steps=0), "riemann_steps"),
    (lambda: IGNorm(attack_riemann_steps=0), "attack_riemann_steps"),
    (lambda: IGSumNorm(beta=-0.1), "beta"),
    (lambda: IGSumNorm(attack_riemann_steps=1.5), "attack_riemann_steps"),
    (lambda: IGNorm(attack=PGD(eps=2.0)), "eps"),
]


@pytest.mark.parametrize(("build", "field"), CASES, ids=[f"{i}-{f}" for i, (_, f) in enumerate(CASES)])
def test_constructor_names_the_field(build: Callable[[], object], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field} must be"):
        build()


@pytest.fixture(autouse=True)
def no_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """train.main gets its arguments from the test, not from pytest's own command line."""
    monkeypatch.setattr(sys, "argv", ["train.py"])


def cli_error(capsys: pytest.CaptureFixture[str], *overrides: str) -> str:
    args = ["fit", "--config", "configs/synthetic/input_gradient.yaml", "--trainer.logger=false", *overrides]
    with pytest.raises(SystemExit) as exit_info:
        train.main(args)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_unknown_regulariser_name_fails_before_training(capsys: pytest.CaptureFixture[str]) -> None:
    err = cli_error(capsys, "--model.objective.init_args.parts.1.objective.class_path=losses.InputGradientPenalt")
    assert "invalid configuration" in err
    assert "losses.InputGradientPenalt" in err
    assert "model.objective.parts" in err


def test_negative_part_weight_fails_with_its_config_path(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    config = tmp_path / "negative.yaml"
    shutil.copy("configs/synthetic/callbacks.yaml", tmp_path)  # the list the recipe names
    text = open("configs/synthetic/input_gradient.yaml").read()
    assert text.count("weight: 0.1  # λ") == 1
    config.write_text(text.replace("weight: 0.1  # λ", "weight: -1.0"))
    with pytest.raises(SystemExit):
        train.main(["fit", "--config", str(config), "--trainer.logger=false"])
    err = capsys.readouterr().err
    assert "model.objective: parts[1].weight must be >= 0, got -1.0" in err


def test_unknown_option_value_fails_at_parse_time(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    config = tmp_path / "bad.yaml"
    shutil.copy("configs/synthetic/callbacks.yaml", tmp_path)  # the list the recipe names
    text = open("configs/synthetic/saliency_guided.yaml").read().replace("replacement: uniform", "replacement: zeros")
    config.write_text(text)
    with pytest.raises(SystemExit):
        train.main(["fit", "--config", str(config), "--trainer.logger=false"])
    err = capsys.readouterr().err
    assert "model.objective.init_args.replacement" in err or "model.objective.replacement" in err
