"""Bad input, tried as a new user would: every case stops before any work with a message that
names what is wrong, exits non-zero, and leaves no output behind."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import train
from tests.data_files import write_png_folder

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = str(REPO / "configs" / "quickstart.yaml")


@dataclass
class Case:
    """One bad input: the command line (``{in}`` is a folder of prepared inputs), what the
    message must contain, and how to prepare the inputs."""

    args: list[str]
    expect: list[str]
    prepare: Callable[[Path, Path], None] = lambda inputs, checkpoint: None
    subcommand: str = "fit"
    config: str = QUICKSTART
    shrink: bool = True
    extra: dict = field(default_factory=dict)


def _shrunk(out: Path) -> list[str]:
    return [
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={out}",
        f"--trainer.logger.init_args.save_dir={out}",
        "--data.init_args.train_size=64",
        "--data.init_args.val_size=128",  # the quickstart's callbacks probe up to 128 images
        "--data.init_args.test_size=16",
        "--model.backbone_kwargs={width: 4, hidden: 16}",
    ]


def _image_folder(channels: int) -> str:
    return "--data=" + json.dumps(
        {"class_path": "datamodules.ImageFolder", "init_args": {"data_dir": "{in}/images", "image_size": 28, "channels": channels}}
    )


def _pngs(inputs: Path, mode: str = "L") -> None:
    write_png_folder(inputs / "images", {"circle": 4, "square": 4}, size=(28, 28), mode=mode)


def _extra_callback(name: str, **init_args: object) -> str:
    """Append one more monitoring callback (index 5, after the quickstart's five) to the recipe."""
    return "--trainer.callbacks+=" + json.dumps({"class_path": f"callbacks.{name}", "init_args": init_args})


def _not_an_image(inputs: Path, checkpoint: Path) -> None:
    _pngs(inputs)
    (inputs / "images" / "square" / "notes.txt").write_text("not an image")


def _corrupt_png(inputs: Path, checkpoint: Path) -> None:
    _pngs(inputs)
    (inputs / "images" / "circle" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)


def _copy_checkpoint(inputs: Path, checkpoint: Path) -> None:
    inputs.mkdir(parents=True, exist_ok=True)
    shutil.copy(checkpoint, inputs / "model.ckpt")


def _truncated_checkpoint(inputs: Path, checkpoint: Path) -> None:
    inputs.mkdir(parents=True, exist_ok=True)
    data = checkpoint.read_bytes()
    (inputs / "model.ckpt").write_bytes(data[: len(data) // 2])


def _rgb_folder_and_checkpoint(inputs: Path, checkpoint: Path) -> None:
    _pngs(inputs, mode="RGB")
    _copy_checkpoint(inputs, checkpoint)


CASES = {
    "unknown key": Case(["--model.bogus=1"], ["--model.bogus"]),
    "unknown data option": Case(["--data.init_args.num_clases=3"], ["data", "num_clases"]),
    "wrong type": Case(["--trainer.max_epochs=many"], ["trainer.max_epochs", "int"]),
    "wrong type in data": Case(["--data.init_args.batch_size=1.5"], ["data", "batch_size"]),
    "eps below 0": Case(["--model.eval_attack.init_args.eps=-0.1"], ["model.eval_attack.init_args.eps", ">= 0"]),
    "eps above 1": Case(["--model.objective.init_args.attack.init_args.eps=1.5"], ["attack.init_args.eps", "[0, 1]"]),
    "unknown norm": Case(["--model.objective.init_args.attack.init_args.norm=l3"], ["norm", "linf", "l2"]),
    "zero restarts": Case(["--model.eval_attack.init_args.restarts=0"], ["restarts", ">= 1"]),
    "clean weight above 1": Case(["--model.objective.init_args.clean_weight=2"], ["clean_weight", "[0, 1]"]),
    "unknown backbone": Case(["--model.backbone=resnet"], ["model.backbone", "small_cnn"]),
    "unknown torchvision model": Case(["--model.backbone=torchvision/resnet9000"], ["model.backbone", "resnet9000"]),
    "unknown activation": Case(["--model.activation=tanh"], ["model.activation", "relu", "softplus"]),
    "unknown objective": Case(["--model.objective=losses.Nope"], ["model.objective", "losses.Nope"]),
    "k outside (0, 1)": Case(
        ['--model.objective={"class_path": "losses.SaliencyGuidedTraining", "init_args": {"mask_fraction": 1.5}}'],
        ["mask_fraction", "(0, 1)"],
    ),
    "negative regulariser weight": Case(
        ['--model.objective={"class_path": "losses.InputGradientPenalty", "init_args": {"penalty_weight": -1}}'],
        ["penalty_weight", ">= 0"],
    ),
    "negative TRADES beta": Case(
        ['--model.objective={"class_path": "losses.TRADES", "init_args": {"beta": -1}}'], ["beta", ">= 0"]
    ),
    "negative MART beta": Case(
        ['--model.objective={"class_path": "losses.MART", "init_args": {"beta": -1}}'], ["beta", ">= 0"]
    ),
    "AWP of size 0": Case(
        [
            '--model.objective={"class_path": "losses.AWP", "init_args": {"gamma": 0, '
            '"objective": {"class_path": "losses.PGDAdversarialTraining"}}}'
        ],
        ["model.objective.init_args.gamma", "> 0"],
    ),
    "weight average decay of 1": Case(
        [_extra_callback("WeightAverage", decay=1.0)], ["trainer.callbacks[5].init_args.decay", "[0, 1)"]
    ),
    "unknown WideResNet depth": Case(
        ["--model.backbone=wrn28_10", "--model.backbone_kwargs={depth: 27}"],
        ["model.backbone_kwargs", "depth must be", "divisible by 6"],
    ),
    "two-channel images": Case(["--data.init_args.channels=2"], ["channels", "1 or 3"]),
    "missing data directory": Case(
        ["--data.init_args.data_dir={in}/nowhere", "--trainer.logger=false"],
        ["data_dir", "nowhere", "train-images-idx3-ubyte"],
        config=str(REPO / "configs" / "mnist" / "erm.yaml"),
        shrink=False,
    ),
    "non-image file in an image folder": Case([_image_folder(1)], ["notes.txt", "not an image"], prepare=_not_an_image),
    "corrupt image in an image folder": Case([_image_folder(1)], ["broken.png"], prepare=_corrupt_png),
    "unknown attribution method in a callback": Case(
        [_extra_callback("ExplanationMonitor", methods=["salincy"])], ["trainer.callbacks", "methods", "saliency", "salincy"]
    ),
    "unknown metric in a callback": Case(
        [_extra_callback("ExplanationMonitor", metrics=["topk_intersection@nois"])],
        ["trainer.callbacks[5].init_args.metrics", "topk_intersection@noise", "topk_intersection@nois"],
    ),
    "callback cadence of 0": Case(
        [_extra_callback("RobustnessEvaluator", every_n_epochs=0)], ["trainer.callbacks[5].init_args.every_n_epochs", ">= 1"]
    ),
    "probe set larger than the validation split": Case(
        [_extra_callback("SanityCheck", probe_size=500)], ["trainer.callbacks", "SanityCheck", "probe_size", "at most 128"]
    ),
    "mask metric on data without masks": Case(
        [_image_folder(1), "--data.init_args.val_size=0.5"],  # the quickstart's monitor scores relevance mass
        ["trainer.callbacks", "ExplanationMonitor", "relevance_mass"],
        prepare=lambda inputs, checkpoint: write_png_folder(inputs / "images", {"circle": 80, "square": 80}, size=(28, 28)),
    ),
    "missing checkpoint": Case(["--ckpt_path={in}/none.ckpt"], ["ckpt_path", "none.ckpt"], subcommand="validate"),
    "truncated checkpoint": Case(
        ["--ckpt_path={in}/model.ckpt"], ["ckpt_path", "model.ckpt"], prepare=_truncated_checkpoint, subcommand="validate"
    ),
    # The model is built from the checkpoint's hyper-parameters and sized by the data: a
    # checkpoint for 4 classes does not fit a 6-class dataset.
    "checkpoint of another architecture": Case(
        ["--ckpt_path={in}/model.ckpt", "--data.init_args.num_classes=6"],
        ["ckpt_path", "do not fit", "shape"],
        prepare=_copy_checkpoint,
        subcommand="validate",
    ),
    "images of the wrong channel count for the checkpoint": Case(
        ["--ckpt_path={in}/model.ckpt", _image_folder(3)],
        ["ckpt_path", "do not fit"],
        prepare=_rgb_folder_and_checkpoint,
        subcommand="test",
    ),
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint of the shrunk quickstart model (one epoch, seconds)."""
    out = tmp_path_factory.mktemp("trained")
    cli = train.main(["fit", "--config", QUICKSTART, *_shrunk(out), "--trainer.logger=false"])
    return Path(cli.trainer.checkpoint_callback.last_model_path)


def test_the_table_is_long_enough() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_stops_before_any_work(
    name: str, tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = CASES[name]
    inputs, out = tmp_path / "in", tmp_path / "out"
    case.prepare(inputs, checkpoint)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    args = [case.subcommand, "--config", case.config, *(_shrunk(out) if case.shrink else [])]
    args += [a.replace("{in}", str(inputs)) for a in case.args]
    with pytest.raises(SystemExit) as exit_info:
        train.main(args)
    assert exit_info.value.code not in (0, None)
    err = capsys.readouterr().err
    first_lines = "\n".join(line for line in err.splitlines() if not line.startswith("wandb:"))
    assert "Traceback" not in err
    for text in case.expect:
        assert text in first_lines, f"{text!r} not in:\n{first_lines}"
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before, "the failed run wrote files"


def test_export_of_a_truncated_checkpoint_fails_cleanly(tmp_path: Path, checkpoint: Path, capsys) -> None:
    _truncated_checkpoint(tmp_path / "in", checkpoint)
    with pytest.raises(SystemExit) as exit_info:
        train.main(["export", "--ckpt_path", str(tmp_path / "in" / "model.ckpt"), "--out_dir", str(tmp_path / "bundle")])
    assert exit_info.value.code == 1
    assert "model.ckpt" in capsys.readouterr().err
    assert not (tmp_path / "bundle").exists()
