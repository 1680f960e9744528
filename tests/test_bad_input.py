"""Bad input, tried as a new user would: every case stops before any work with a message that
names what is wrong, exits non-zero, and leaves no output behind."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import train
from callbacks.checkpoint_io import AtomicCheckpointIO
from tests.data_files import write_mnist, write_png_folder

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
    slow: bool = False


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
    """Append one more callback (index 6, after the quickstart's six) to the recipe: a robustlens
    one by name, or any by its full class path."""
    class_path = name if "." in name else f"callbacks.{name}"
    return "--trainer.callbacks+=" + json.dumps({"class_path": class_path, "init_args": init_args})


def _array_file(**init_args: object) -> str:
    """The datamodule of ``{in}/data.npz``: 2 classes, images drawn by :func:`_npz`."""
    node = {"class_path": "datamodules.ArrayFile", "init_args": {"train_file": "{in}/data.npz", "num_classes": 2, **init_args}}
    return "--data=" + json.dumps(node)


def _npz(change: Callable[[np.ndarray, np.ndarray], None]) -> Callable[[Path, Path], None]:
    """Prepare ``{in}/data.npz``: 40 float images in [0, 1] (N, 28, 28, 1) and labels 0/1, then
    ``change(images, labels)`` in place."""

    def prepare(inputs: Path, checkpoint: Path) -> None:
        rng = np.random.default_rng(0)
        images = rng.random((40, 28, 28, 1), dtype=np.float32)
        labels = np.arange(40) % 2
        change(images, labels)
        inputs.mkdir(parents=True, exist_ok=True)
        np.savez(inputs / "data.npz", image=images, label=labels)

    return prepare


def _set(array: np.ndarray, index: tuple, value: float) -> None:
    array[index] = value


def _mnist_with_label(inputs: Path, checkpoint: Path) -> None:
    """MNIST files whose training labels hold a 12 at example 3."""
    write_mnist(inputs / "mnist", n_train=40)
    path = inputs / "mnist" / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[8 + 3] = 12  # after the 8-byte header (magic, count)
    path.write_bytes(bytes(data))


def _sixteen_bit_png(inputs: Path, checkpoint: Path) -> None:
    _pngs(inputs)
    deep = np.full((28, 28), 40000, dtype=np.uint16)
    Image.fromarray(deep).save(inputs / "images" / "circle" / "deep.png")
    assert Image.open(inputs / "images" / "circle" / "deep.png").mode.startswith("I")


def _a_file(inputs: Path, checkpoint: Path) -> None:
    inputs.mkdir(parents=True, exist_ok=True)
    (inputs / "notes.txt").write_text("a file, not a folder")


def _resume(*args: str) -> Case:
    """A fit resumed from the fixture's checkpoint with another recipe."""
    return Case(["--ckpt_path={in}/model.ckpt", *args], ["ckpt_path", "another recipe"], prepare=_copy_checkpoint)


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
    "backbone class that cannot be imported": Case(
        ["--model.backbone=no_such_package.Net"], ["model.backbone", "no_such_package.Net", "PYTHONPATH"]
    ),
    "backbone class that is no nn.Module": Case(
        ["--model.backbone=collections.OrderedDict"], ["model.backbone", "not an nn.Module subclass"]
    ),
    "unknown argument of a backbone class": Case(
        ['--model.backbone={"class_path": "lightning_modules.Wong2020MNIST", "init_args": {"hiden": 10}}'],
        ["model.backbone", "hiden"],
    ),
    "backbone class whose output is not one logit per class": Case(
        ["--model.backbone=torch.nn.Identity", "--model.backbone_kwargs=null"], ["model.backbone", "num_classes"]
    ),
    "unknown activation": Case(["--model.activation=tanh"], ["model.activation", "relu", "softplus"]),
    "unknown objective": Case(["--model.objective=losses.Nope"], ["model.objective", "losses.Nope"]),
    "k outside (0, 1)": Case(
        ['--model.objective={"class_path": "losses.SaliencyGuidedTraining", "init_args": {"mask_fraction": 1.5}}'],
        ["mask_fraction", "(0, 1)"],
    ),
    "negative regulariser weight": Case(
        [
            '--model.objective={"class_path": "losses.WeightedSum", "init_args": {"parts": '
            '[{"objective": {"class_path": "losses.ERM"}}, '
            '{"objective": {"class_path": "losses.InputGradientPenalty"}, "weight": -1}]}}'
        ],
        ["model.objective", "parts[1].weight", ">= 0"],
    ),
    "retired regulariser penalty_weight": Case(
        [
            '--model.objective={"class_path": "losses.WeightedSum", "init_args": {"parts": '
            '[{"objective": {"class_path": "losses.ERM"}}, '
            '{"objective": {"class_path": "losses.CurvaturePenalty", "init_args": {"penalty_weight": 4.0}}}]}}'
        ],
        ["parts[1].objective.init_args.penalty_weight", "penalty_weight is retired", "losses.WeightedSum", "`weight` by 4.0"],
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
        [_extra_callback("WeightAverage", decay=1.0)], ["trainer.callbacks[6].init_args.decay", "[0, 1)"]
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
        ["trainer.callbacks[6].init_args.metrics", "topk_intersection@noise", "topk_intersection@nois"],
    ),
    "top-k attack given k and k_score": Case(
        [
            _extra_callback(
                "ExplanationMonitor",
                metrics=["kendall@topk_attack"],
                metric_options={"kendall@topk_attack": {"k": 50, "k_score": 20}},
            )
        ],
        ["trainer.callbacks[6].init_args.metric_options", "kendall@topk_attack", "k sets both k_attack and k_score"],
    ),
    "callback cadence of 0": Case(
        [_extra_callback("RobustnessEvaluator", every_n_epochs=0)], ["trainer.callbacks[6].init_args.every_n_epochs", ">= 1"]
    ),
    "unknown attack in an evaluator": Case(
        [_extra_callback("RobustnessEvaluator", attacks=[{"class_path": "attacks.Nope"}])],
        ["trainer.callbacks", "attacks", "attacks.Nope"],
    ),
    "empty attack list": Case(
        [_extra_callback("RobustnessEvaluator", attacks=[])], ["trainer.callbacks[6].init_args.attacks", "non-empty"]
    ),
    "AutoAttack version that does not exist": Case(
        [_extra_callback("RobustnessEvaluator", attacks=[{"class_path": "attacks.AutoAttack", "init_args": {"version": "plus"}}])],
        ["trainer.callbacks", "version", "standard", "fast", "plus"],
    ),
    "AutoAttack eps outside the L∞ range": Case(
        [_extra_callback("RobustnessEvaluator", attacks=[{"class_path": "attacks.AutoAttack", "init_args": {"eps": 1.5}}])],
        ["trainer.callbacks", "eps", "[0, 1]"],
    ),
    "evaluator radius outside the L∞ range": Case(
        [_extra_callback("RobustnessEvaluator", eps=[0.1, 2.0])], ["trainer.callbacks[6].init_args.eps", "[0, 1]", "2.0"]
    ),
    "unknown attack loss": Case(["--model.eval_attack.init_args.loss=hinge"], ["model.eval_attack", "loss", "margin", "hinge"]),
    "DLR loss on two classes": Case(
        ["--model.eval_attack.init_args.loss=dlr", "--data.init_args.num_classes=2"], ["model.eval_attack", "dlr", "3 classes"]
    ),
    "probe set larger than the validation split": Case(
        [_extra_callback("SanityCheck", probe_size=500)], ["trainer.callbacks", "SanityCheck", "probe_size", "at most 128"]
    ),
    "mask metric on data without masks": Case(
        [_image_folder(1), "--data.init_args.val_size=0.5"],  # the quickstart's monitor scores relevance mass
        ["trainer.callbacks", "ExplanationMonitor", "relevance_mass"],
        prepare=lambda inputs, checkpoint: write_png_folder(inputs / "images", {"circle": 80, "square": 80}, size=(28, 28)),
    ),
    "unknown TCAV concept": Case(
        [_extra_callback("TCAVMonitor", concepts=["stripes"])], ["trainer.callbacks", "TCAVMonitor", "concepts", "patch", "stripes"]
    ),
    "one TCAV random set": Case(
        [_extra_callback("TCAVMonitor", concepts=["patch"], random_sets=1)], ["trainer.callbacks[6].init_args.random_sets", ">= 2"]
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
    # Optimiser and schedule: built and stepped for the run's length before any work, whatever the class.
    "negative learning rate": Case(["--model.optimizer.init_args.lr=-0.1"], ["model.optimizer.init_args.lr", ">= 0"]),
    "infinite learning rate": Case(["--model.optimizer.init_args.lr=.inf"], ["model.optimizer.init_args.lr", "finite"]),
    "Adam beta of 1 or more": Case(["--model.optimizer.init_args.betas=[1.5, 0.999]"], ["init_args.betas", "[0, 1)"]),
    "negative SGD momentum": Case(
        ["--model.optimizer=torch.optim.SGD", "--model.optimizer.init_args.lr=0.1", "--model.optimizer.init_args.momentum=-0.5"],
        ["model.optimizer.init_args.momentum", ">= 0"],
    ),
    "scheduler that refuses its arguments": Case(
        ["--model.lr_scheduler=torch.optim.lr_scheduler.LinearLR", "--model.lr_scheduler.init_args.start_factor=2"],
        ["model.lr_scheduler.init_args.start_factor", "less or equal to 1"],
    ),
    "StepLR of step size 0": Case(
        ["--model.lr_scheduler=torch.optim.lr_scheduler.StepLR", "--model.lr_scheduler.init_args.step_size=0"],
        ["model.lr_scheduler", "StepLR(step_size=0)", "scheduler step 1"],
    ),
    "schedule that turns the learning rate negative": Case(
        [
            "--model.lr_scheduler=torch.optim.lr_scheduler.ExponentialLR",
            "--model.lr_scheduler.init_args.gamma=-0.5",
            "--trainer.max_epochs=2",  # the second epoch would train with lr < 0
        ],
        ["model.lr_scheduler", "gamma=-0.5", ">= 0"],
    ),
    "OneCycleLR shorter than the run": Case(
        [
            "--model.lr_scheduler=torch.optim.lr_scheduler.OneCycleLR",
            "--model.lr_scheduler.init_args.max_lr=0.01",
            "--model.lr_scheduler.init_args.total_steps=2",
            "--model.scheduler_interval=step",
            "--trainer.max_epochs=3",
        ],
        ["model.lr_scheduler", "total_steps=2", "scheduler step 3 of the 3"],
    ),
    "ReduceLROnPlateau": Case(
        ["--model.lr_scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau"], ["model.lr_scheduler", "StepLR"]
    ),
    # Trainer arguments: refused by Lightning when the Trainer is built, or only once the run is under way.
    "negative max_epochs": Case(["--trainer.max_epochs=-5"], ["trainer.max_epochs", "-1"]),
    "zero devices": Case(["--trainer.devices=0"], ["trainer.devices"]),
    "an accelerator the machine lacks": Case(["--trainer.accelerator=tpu"], ["trainer.accelerator"]),
    "max_time in another format": Case(["--trainer.max_time=bogus"], ["trainer.max_time", "DD:HH:MM:SS"]),
    "limit_train_batches above 1": Case(["--trainer.limit_train_batches=1.5"], ["trainer.limit_train_batches", "[0.0, 1.0]"]),
    "accumulate_grad_batches of 0": Case(["--trainer.accumulate_grad_batches=0"], ["trainer.accumulate_grad_batches", ">= 1"]),
    "negative gradient clipping": Case(["--trainer.gradient_clip_val=-1"], ["trainer.gradient_clip_val", ">= 0"]),
    "unknown gradient clipping algorithm": Case(
        ["--trainer.gradient_clip_val=1", "--trainer.gradient_clip_algorithm=bogus"],
        ["trainer.gradient_clip_algorithm", "value", "norm"],
    ),
    "validation every 0 epochs": Case(["--trainer.check_val_every_n_epoch=0"], ["trainer.check_val_every_n_epoch", ">= 1"]),
    "validation interval longer than an epoch": Case(
        ["--trainer.val_check_interval=1000"], ["trainer.val_check_interval", "at most the 1 training batches"]
    ),
    "validation interval of 0": Case(["--trainer.val_check_interval=0.0"], ["trainer.val_check_interval", "(0, 1]"]),
    "negative log_every_n_steps": Case(["--trainer.log_every_n_steps=-1"], ["trainer.log_every_n_steps", ">= 0"]),
    "num_sanity_val_steps below -1": Case(["--trainer.num_sanity_val_steps=-2"], ["trainer.num_sanity_val_steps", "-1"]),
    "min_epochs above max_epochs": Case(["--trainer.min_epochs=5"], ["trainer.min_epochs", "<= max_epochs"]),
    "seed out of range": Case(["--seed_everything=-5"], ["seed_everything", "4294967295"]),
    # Loggers and checkpoints.
    "W&B run id W&B refuses": Case(["--trainer.logger.init_args.id=a/b"], ["trainer.logger.init_args.id", "cannot contain"]),
    "empty W&B project": Case(["--trainer.logger.init_args.project="], ["trainer.logger.init_args.project"]),
    "logger folder inside a file": Case(
        ["--trainer.logger.init_args.save_dir={in}/notes.txt/runs"], ["trainer.logger.init_args.save_dir", "is a file"], prepare=_a_file
    ),
    "CSV logs flushed every 0 steps": Case(
        ["--trainer.logger=pytorch_lightning.loggers.CSVLogger", "--trainer.logger.init_args.save_dir={in}/csv",
         "--trainer.logger.init_args.flush_logs_every_n_steps=0"],
        ["trainer.logger.init_args.flush_logs_every_n_steps", ">= 1"],
    ),  # fmt: skip
    "checkpoint monitoring a metric never logged": Case(
        [_extra_callback("ModelCheckpoint", monitor="val/acc_pdg")],
        ["trainer.callbacks[6].init_args.monitor", "val/acc_pdg", "did you mean 'val/acc_pgd'"],
    ),
    "early stopping on a metric never logged": Case(
        [_extra_callback("pytorch_lightning.callbacks.EarlyStopping", monitor="val/loss_adv")],
        ["trainer.callbacks[6].init_args.monitor", "val/loss_adv"],
    ),
    "unknown checkpoint mode": Case(
        [_extra_callback("ModelCheckpoint", monitor="val/acc", mode="maximum")], ["trainer.callbacks[6].init_args.mode", "min, max"]
    ),
    "checkpoint folder inside a file": Case(
        [_extra_callback("ModelCheckpoint", dirpath="{in}/notes.txt/ckpt")],
        ["trainer.callbacks[6].init_args.dirpath", "is a file"],
        prepare=_a_file,
    ),
    "export of a metric no checkpoint monitors": Case(
        [_extra_callback("ExportBundle", monitor="val/acc")], ["trainer.callbacks[6].init_args.monitor", "ModelCheckpoint"]
    ),
    # Corrupt values in the data, found when it is set up.
    "NaN pixels in an array file": Case(
        [_array_file()], ["data.npz", "example 7", "NaN"], prepare=_npz(lambda x, y: _set(x, (7, 3, 4, 0), np.nan))
    ),
    "pixels in 0..255 stored as floats": Case(
        [_array_file()], ["data.npz", "example 0", "[0, 1]", "uint8"], prepare=_npz(lambda x, y: x.__imul__(255))
    ),
    "label out of range in an array file": Case(
        [_array_file()], ["data.npz", "example 5", "label 2", "[0, 1]"], prepare=_npz(lambda x, y: _set(y, (5,), 2))
    ),
    "label out of range in an MNIST file": Case(
        ["--data.init_args.data_dir={in}/mnist", "--data.init_args.val_size=8", "--trainer.logger=false"],
        ["train-labels-idx1-ubyte", "example 3", "label 12"],
        prepare=_mnist_with_label,
        config=str(REPO / "configs" / "mnist" / "erm.yaml"),
        shrink=False,
    ),
    "16-bit image in an image folder": Case([_image_folder(1)], ["deep.png", "8 bits"], prepare=_sixteen_bit_png),
    # Resuming a fit from a checkpoint of another recipe.
    "resume with another objective": _resume("--model.objective=losses.ERM"),
    "resume with another architecture": _resume("--model.backbone_kwargs={width: 8, hidden: 16}"),
    "resume on another dataset": _resume("--data.init_args.num_classes=6"),
}
# Each case runs the command (about 1.5 s); the default run keeps one case of each kind among the
# later ones, `-m slow` runs the rest.
for _name in (
    "infinite learning rate", "Adam beta of 1 or more", "negative SGD momentum", "scheduler that refuses its arguments",
    "OneCycleLR shorter than the run", "ReduceLROnPlateau", "negative max_epochs", "zero devices",
    "an accelerator the machine lacks", "limit_train_batches above 1", "negative gradient clipping",
    "unknown gradient clipping algorithm", "validation every 0 epochs", "validation interval of 0",
    "negative log_every_n_steps", "num_sanity_val_steps below -1", "min_epochs above max_epochs", "empty W&B project",
    "logger folder inside a file", "CSV logs flushed every 0 steps", "early stopping on a metric never logged",
    "unknown checkpoint mode", "checkpoint folder inside a file", "export of a metric no checkpoint monitors",
    "pixels in 0..255 stored as floats", "label out of range in an array file", "resume with another architecture",
    "resume on another dataset", "16-bit image in an image folder", "StepLR of step size 0",
):  # fmt: skip
    CASES[_name].slow = True
CASES["resume with another objective"].expect += ["model.objective.class_path", "losses.PGDAdversarialTraining", "losses.ERM"]
CASES["resume with another architecture"].expect += ["model.backbone_kwargs.width: 4", "8"]
CASES["resume on another dataset"].expect += ["data.init_args.num_classes: 4", "6"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint of the shrunk quickstart model (one epoch, seconds)."""
    out = tmp_path_factory.mktemp("trained")
    cli = train.main(["fit", "--config", QUICKSTART, *_shrunk(out), "--trainer.logger=false"])
    return Path(cli.trainer.checkpoint_callback.last_model_path)


def test_the_table_is_long_enough() -> None:
    assert len(CASES) >= 70


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its content's digest (folders: "dir")."""
    return {
        str(p): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if c.slow else n for n, c in CASES.items()])
def test_bad_input_stops_before_any_work(
    name: str, tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = CASES[name]
    inputs, out = tmp_path / "in", tmp_path / "out"
    case.prepare(inputs, checkpoint)
    before = _snapshot(tmp_path)
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
    assert _snapshot(tmp_path) == before, "the failed run wrote or changed files"


def test_export_of_a_truncated_checkpoint_fails_cleanly(tmp_path: Path, checkpoint: Path, capsys) -> None:
    _truncated_checkpoint(tmp_path / "in", checkpoint)
    with pytest.raises(SystemExit) as exit_info:
        train.main(["export", "--ckpt_path", str(tmp_path / "in" / "model.ckpt"), "--out_dir", str(tmp_path / "bundle")])
    assert exit_info.value.code == 1
    assert "model.ckpt" in capsys.readouterr().err
    assert not (tmp_path / "bundle").exists()


def test_a_full_disk_during_a_checkpoint_write_ends_cleanly_and_keeps_the_old_checkpoint(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed fit whose next ``last.ckpt`` write hits a full disk: the run ends with the file
    named and no traceback, and the previous ``last.ckpt`` is byte for byte what it was."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    last = run / "checkpoints" / "last.ckpt"
    shutil.copy(checkpoint, last)
    before = _snapshot(tmp_path)

    def full_disk(self, contents, handle) -> None:
        handle.write(b"\0" * 4096)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(AtomicCheckpointIO, "serialise", full_disk)
    only_last = {"class_path": "callbacks.ModelCheckpoint", "init_args": {"save_last": True, "save_top_k": 0, "enable_version_counter": False}}
    args = ["fit", "--config", QUICKSTART, *_shrunk(run), "--trainer.logger=false", f"--trainer.callbacks=[{json.dumps(only_last)}]",
            f"--ckpt_path={last}", "--trainer.max_epochs=2"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        train.main(args)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"error: could not write checkpoint {last}: No space left on device" in err and f"{last} is unchanged" in err
    after = _snapshot(tmp_path)
    assert after.pop(str(run / "config.yaml"))  # written when the run started, an epoch before the save
    assert after == before  # the old checkpoint whole, no temporary file left
