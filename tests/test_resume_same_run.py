"""A fit stopped by SIGTERM and resumed with ``--ckpt_path`` is the same run: the same W&B run
(offline), the same run folder, and checkpoint tracking that carries over, so the best checkpoint
printed at the end is the best of the whole run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import wandb
from pytorch_lightning.utilities.exceptions import SIGTERMException

import train
from tests.wandb_offline import find_run_dirs, read_run

QUICKSTART = str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml")
STEPS_PER_EPOCH = 3  # 96 training examples in batches of 32
CALLBACKS = [
    # The quickstart's checkpoints (its monitoring callbacks left out: seconds saved)...
    {"class_path": "callbacks.ModelCheckpoint", "init_args": {
        "monitor": "val/acc_pgd", "mode": "max", "save_last": True, "filename": "best-epoch{epoch:02d}-accpgd{val/acc_pgd:.4f}",
        "auto_insert_metric_name": False}},
    {"class_path": "callbacks.PreemptionCheckpoint"},
    # ...and one whose best is always the first epoch's: the resumed part keeps it only if it knows
    # what the pre-empted part saved.
    {"class_path": "callbacks.ModelCheckpoint", "init_args": {"monitor": "epoch", "mode": "min", "filename": "first-{epoch}"}},
]  # fmt: skip


def _fit(save_dir: Path, *extra: str) -> list[str]:
    return [
        "fit", "--config", QUICKSTART,
        "--trainer.max_epochs=3",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.log_every_n_steps=1",
        f"--trainer.logger.init_args.save_dir={save_dir}",
        "--data.init_args.train_size=96",
        "--data.init_args.val_size=128",  # the quickstart callbacks draw probe sets of 64 and 128
        "--data.init_args.test_size=16",
        "--data.init_args.batch_size=32",
        "--model.backbone_kwargs={width: 4, hidden: 16}",
        "--model.objective.init_args.attack.init_args.steps=2",
        "--model.objective.init_args.eps_warmup_steps=3",
        "--model.eval_attack.init_args.steps=2",
        "--trainer.callbacks=" + json.dumps(CALLBACKS),
        *extra,
    ]  # fmt: skip


def test_a_resumed_fit_continues_the_same_wandb_run_folder_and_best_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sigterm = "--trainer.callbacks+=" + json.dumps({"class_path": "tests.conftest.SigtermAtStep", "init_args": {"step": 4}})
    with pytest.raises(SIGTERMException):
        train.main(_fit(tmp_path, sigterm))  # stopped in the second epoch
    first = wandb.run
    run_id = first.id
    wandb.finish()  # the pre-empted process ends here
    folder = next(tmp_path.rglob("checkpoints"))
    assert folder == tmp_path / "robustlens" / run_id / "checkpoints"
    first_files = sorted(p.name for p in folder.iterdir())
    assert "last.ckpt" in first_files and "first-epoch=0.ckpt" in first_files
    capsys.readouterr()

    cli = train.main(_fit(tmp_path, f"--ckpt_path={folder / 'last.ckpt'}"))
    out = capsys.readouterr().out
    assert f"WandbLogger id='{run_id}'" in out
    # The same W&B run: offline, its resumed part is a second folder with the same id.
    assert cli.trainer.logger.version == run_id
    runs = find_run_dirs(tmp_path)
    assert len(runs) == 2 and all(run.name.endswith(f"-{run_id}") for run in runs)
    parts = [read_run(run) for run in runs]
    steps = [[row["trainer/global_step"] for row in part.history if "val/acc_pgd" in row] for part in parts]
    assert steps[0] == [STEPS_PER_EPOCH - 1] and steps[1] == [2 * STEPS_PER_EPOCH - 1, 3 * STEPS_PER_EPOCH - 1]
    # The same folder, nothing duplicated in it.
    callback = cli.trainer.checkpoint_callback
    assert Path(callback.dirpath) == folder and Path(callback.last_model_path) == folder / "last.ckpt"
    assert not [name for name in sorted(p.name for p in folder.iterdir()) if "-v1" in name]
    # Best-checkpoint tracking carried over: the first epoch stays the best of the "epoch, min"
    # checkpoint, and the printed best of val/acc_pgd is the best of all three epochs.
    first_epoch = next(c for c in cli.trainer.callbacks if getattr(c, "monitor", None) == "epoch")
    assert Path(first_epoch.best_model_path) == folder / "first-epoch=0.ckpt" and first_epoch.best_model_score == 0
    acc_pgd = [row["val/acc_pgd"] for part in parts for row in part.history if "val/acc_pgd" in row]
    assert float(callback.best_model_score) == pytest.approx(max(acc_pgd))
    assert Path(callback.best_model_path).parent == folder
    assert f"best checkpoint:   {callback.best_model_path}" in out


def test_a_resumed_csv_logged_fit_keeps_the_rows_logged_before_the_resume(tmp_path: Path) -> None:
    """Lightning's CSVLogger deletes metrics.csv when it opens its version folder again: the
    resumed fit's file must still hold the whole curve, each step once."""
    csv_logger = [
        "--trainer.logger=pytorch_lightning.loggers.CSVLogger",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--trainer.logger.init_args.name=csv",
        "--trainer.logger.init_args.version=run",
    ]
    sigterm = "--trainer.callbacks+=" + json.dumps({"class_path": "tests.conftest.SigtermAtStep", "init_args": {"step": 4}})
    fit = [a for a in _fit(tmp_path) if not a.startswith("--trainer.logger.init_args.save_dir")]
    with pytest.raises(SIGTERMException):
        train.main([*fit, *csv_logger, sigterm])
    folder = next(tmp_path.rglob("checkpoints"))
    train.main([*fit, *csv_logger, f"--ckpt_path={folder / 'last.ckpt'}"])
    with (tmp_path / "csv" / "run" / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    train_steps = [int(row["step"]) for row in rows if row.get("train/loss")]
    val_steps = [int(row["step"]) for row in rows if row.get("val/acc_pgd")]
    assert train_steps == list(range(3 * STEPS_PER_EPOCH))  # log_every_n_steps=1: every step, once
    assert val_steps == [STEPS_PER_EPOCH - 1, 2 * STEPS_PER_EPOCH - 1, 3 * STEPS_PER_EPOCH - 1]
