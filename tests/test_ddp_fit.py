"""train.py under DDP on two CPU processes (gloo), with PGD, a regulariser and the monitoring
callbacks on: it finishes, rank zero alone writes, every training image is seen once per epoch,
and the logged metrics equal a single-process evaluation of the same weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from attacks import PGD
from callbacks import ExplanationMonitor, RobustnessEvaluator
from datamodules import SyntheticShapes
from export import load_classifier
from tests.ddp_probes import image_digests
from tests.recipes import without_monitors
from tests.wandb_offline import find_run_dirs, read_run

REPO = Path(__file__).resolve().parents[1]
MONITOR = {"methods": ["saliency"], "metrics": ["topk_intersection@noise", "spearman@noise"], "probe_size": 16, "panels": 2}
CURVE_PGD = {"eps": 0.1, "step_size": 0.025, "steps": 3, "seed": 0, "loss": "margin"}
CURVE = {"eps": [0.0, 0.1], "attacks": [{"class_path": "attacks.PGD", "init_args": CURVE_PGD}], "probe_size": 16}
SHRINK = [
    "--trainer.accelerator=cpu",
    "--trainer.max_epochs=2",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.log_every_n_steps=1",
    "--data.init_args.train_size=128",
    "--data.init_args.val_size=65",  # shares of 33 and 32: 2 and 1 batches of 32
    "--data.init_args.test_size=16",
    "--data.init_args.batch_size=16",
    "--data.init_args.eval_batch_size=32",
    "--model.backbone_kwargs={width: 4, hidden: 16}",
    "--model.eval_attack.init_args.steps=3",
]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_ddp_fit_with_pgd_and_a_regulariser(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    probes = tmp_path / "probes"
    result = _run(
        [
            "fit",
            "--config",
            str(REPO / "configs" / "synthetic" / "pgd_at_stability.yaml"),
            *SHRINK,
            "--trainer.strategy=ddp",
            "--trainer.devices=2",
            f"--trainer.default_root_dir={out}",
            f"--trainer.logger.init_args.save_dir={out}",
            without_monitors("synthetic/pgd_at_stability"),  # this test's own, below, fit its 65 images
            "--trainer.callbacks+=tests.ddp_probes.RecordTrainingImages",
            f"--trainer.callbacks.out_dir={probes}",
            "--trainer.callbacks+=" + json.dumps({"class_path": "callbacks.ExplanationMonitor", "init_args": MONITOR}),
            "--trainer.callbacks+=" + json.dumps({"class_path": "callbacks.RobustnessEvaluator", "init_args": CURVE}),
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    # Rank zero alone wrote: one W&B run, one checkpoint folder.
    (run_dir,) = find_run_dirs(out)
    checkpoints = sorted(p.name for p in out.rglob("*.ckpt"))
    assert checkpoints.count("last.ckpt") == 1 and len(checkpoints) == 2, checkpoints

    # Each epoch, the two ranks together trained on every image exactly once.
    dm = SyntheticShapes(num_classes=4, train_size=128, val_size=65, test_size=16)
    expected = Counter(image_digests(dm.split_dataset("train").data.images))
    for epoch in (0, 1):
        seen = [torch.load(probes / f"rank{r}_epoch{epoch}.pt")["digests"] for r in (0, 1)]
        assert len(seen[0]) == len(seen[1]) == 64
        assert Counter(seen[0] + seen[1]) == expected

    # The logged validation metrics of the last epoch equal one process validating the same weights
    # (65 validation images on 2 processes: nothing repeated to even out the shares).
    logged = read_run(run_dir)
    last = (out / "robustlens").rglob("last.ckpt").__next__()
    single = _run(
        [
            "validate",
            "--config",
            str(REPO / "configs" / "synthetic" / "pgd_at_stability.yaml"),
            *SHRINK,
            "--trainer.logger=pytorch_lightning.loggers.CSVLogger",
            f"--trainer.logger.init_args.save_dir={tmp_path / 'single'}",
            "--trainer.callbacks=[]",
            f"--ckpt_path={last}",
        ],
        tmp_path,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    (metrics_csv,) = (tmp_path / "single").rglob("metrics.csv")
    header, values = metrics_csv.read_text().splitlines()[:2]
    single_metrics = dict(zip(header.split(","), values.split(",")))
    for key in ("val/loss", "val/acc", "val/acc_pgd"):  # an odd split: each example counted once
        assert logged.column(key)[-1] == pytest.approx(float(single_metrics[key]), abs=1e-6), key

    # The callbacks' last values equal one process evaluating the same weights on the same probe sets;
    # rank zero alone rendered the panels (one W&B image per example and epoch: 2 × 2).
    model = load_classifier(last).model.eval()
    explanation = ExplanationMonitor(**MONITOR)
    curve = RobustnessEvaluator(**{**CURVE, "attacks": [PGD(**CURVE_PGD)]})  # type: ignore[arg-type]
    for callback in (explanation, curve):
        callback.use_probe(dm.probe_batch(callback.probe_size, callback.probe_seed, split="val"))
    expected = explanation.evaluate(model).values | curve.evaluate(model)
    for key, value in expected.items():
        assert logged.column(key)[-1] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert len(list((run_dir / "files" / "media" / "images" / "panels").glob("saliency*.png"))) == 4
