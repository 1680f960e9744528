"""train.py end to end: the quickstart recipe shrunk, W&B offline read back, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import train
from lightning_modules import RobustClassifier
from tests.wandb_offline import find_run_dirs, read_run

QUICKSTART = str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml")


def _shrunk(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "fit",
        "--config",
        QUICKSTART,
        "--trainer.max_epochs=2",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.log_every_n_steps=1",
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--data.init_args.train_size=96",
        "--data.init_args.val_size=128",  # the quickstart callbacks draw probe sets of 64 and 128
        "--data.init_args.test_size=16",
        "--data.init_args.batch_size=32",
        "--model.backbone_kwargs={width: 4, hidden: 16}",
        "--model.objective.init_args.attack.init_args.steps=2",
        "--model.objective.init_args.eps_warmup_steps=3",
        "--model.eval_attack.init_args.steps=2",
        *extra,
    ]


def test_quickstart_recipe_trains_logs_to_wandb_offline_and_checkpoints(tmp_path: Path) -> None:
    cli = train.main(_shrunk(tmp_path))
    (run_dir,) = find_run_dirs(tmp_path)
    run = read_run(run_dir)
    acc_pgd = run.column("val/acc_pgd")
    assert len(acc_pgd) == 2 and all(0.0 <= a <= 1.0 for a in acc_pgd)
    assert run.column("train/loss") and run.column("train/ce_adv")
    assert "val/acc_pgd" in run.summary
    # The resolved config is recorded in the run, objective and attack included.
    objective = run.config["model"]["objective"]
    assert objective["class_path"] == "losses.PGDAdversarialTraining"
    assert objective["init_args"]["attack"]["init_args"]["eps"] == pytest.approx(0.1)
    assert (run_dir / "files" / "config.yaml").is_file()

    callback = cli.trainer.checkpoint_callback
    best, last = Path(callback.best_model_path), Path(callback.last_model_path)
    assert best.is_file() and last.name == "last.ckpt" and last.is_file()
    assert "/" not in best.name and best.name.startswith("best-")
    restored = RobustClassifier.load_from_checkpoint(best, map_location="cpu")
    assert type(restored.objective).__name__ == "PGDAdversarialTraining"
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    for name, value in restored.state_dict().items():
        torch.testing.assert_close(value, state[name])


def test_fit_prints_where_the_results_are(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train.main(_shrunk(tmp_path, "--trainer.max_epochs=1"))
    out = capsys.readouterr().out
    assert "W&B run directory:" in out and "best checkpoint:" in out and "last checkpoint:" in out


@pytest.mark.parametrize(
    "override, field",
    [
        ("--model.bogus=1", "--model.bogus"),
        ("--data.init_args.num_clases=3", "num_clases"),
        ("--model.eval_attack.init_args.eps=-0.1", "model.eval_attack.init_args.eps"),
        ("--model.objective.init_args.attack.init_args.eps=1.5", "model.objective.init_args.attack.init_args.eps"),
        ("--model.objective.init_args.attack.init_args.norm=l3", "model.objective.attack.norm"),
        ("--trainer.max_epochs=many", "trainer.max_epochs"),
        ("--model.backbone=resnet", "model.backbone"),
    ],
)
def test_bad_configuration_fails_before_any_work_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, field: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train.main(_shrunk(tmp_path / "out", override))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and field in err
    assert not (tmp_path / "out").exists()


def test_divergence_exits_with_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train.main(_shrunk(tmp_path, "--model.optimizer.init_args.lr=1e30", "--trainer.max_epochs=3"))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert any(line.startswith("error: training diverged at global step") for line in err.splitlines())
    assert "non-finite parts: train/ce_adv = nan" in err


def test_the_wandb_api_key_never_reaches_logs_checkpoints_or_exports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "0123456789abcdef0123456789abcdef01234567"  # shaped like a real key
    monkeypatch.setenv("WANDB_API_KEY", secret)
    cli = train.main(_shrunk(tmp_path / "run", "--trainer.max_epochs=1"))
    train.main(
        ["export", "--ckpt_path", cli.trainer.checkpoint_callback.last_model_path, "--out_dir", str(tmp_path / "bundle")]
    )
    read_run(find_run_dirs(tmp_path / "run")[0])  # waits until W&B has written everything
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".ckpt" for p in files) and any(p.suffix == ".wandb" for p in files)
    assert any(p.name == "model.safetensors" for p in files)
    leaking = [str(p) for p in files if secret.encode() in p.read_bytes()]
    assert not leaking
