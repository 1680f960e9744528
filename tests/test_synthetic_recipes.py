"""Every recipe in configs/synthetic/ composes, shrinks and trains through ``train.main``.

Each recipe is run as written except for its size: tiny splits, one epoch of two batches, one
validation batch, a two-step evaluation attack, and a CSV logger in a temporary folder (no
W&B); the monitoring callbacks run as written (after the epoch and at the end of fit) on probe
sets of 8 images. All fifteen take about 20 s on one CPU thread, so none is marked slow. The
logged keys show that the objective ran and reported its parts, and that the monitors ran.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch

import train
from tests.recipes import small_probes
from tests.tiny import single_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("single_thread")

RECIPES = Path(__file__).resolve().parent.parent / "configs" / "synthetic"

# A key each recipe must log, proving that its objective (and each part of a sum) ran.
EXPECTED_KEYS: dict[str, set[str]] = {
    "erm": {"train/ce"},
    "erm_spurious": {"train/ce", "expl/saliency/spurious_share", "tcav/patch/disk", "tcav/patch/disk/p_value"},
    "pgd_at": {"train/ce_adv", "train/eps"},
    "trades": {"train/ce", "train/kl", "train/eps"},
    "fast_at": {"train/ce_adv", "train/co_detected"},
    "saliency_guided": {"train/ce", "train/kl"},
    "input_gradient": {"train/erm", "train/input_gradient", "train/input_gradient/grad_norm_sq"},
    "attribution_stability": {"train/erm/ce", "train/attribution_stability/cosine"},
    "curvature": {"train/erm/ce", "train/curvature/curvature"},
    "ig_norm": {"train/erm/ce", "train/ig_norm/ig_l1"},
    "pgd_at_stability": {"train/pgd_at/ce_adv", "train/attribution_stability/penalty"},
    "mart": {"train/bce", "train/kl", "train/kl_weight", "train/eps", "val/robust_gap"},
    "pgd_at_awp": {"train/ce_adv", "train/unperturbed_loss", "val/robust_gap"},
    "trades_awp": {"train/ce", "train/kl", "train/unperturbed_loss", "train/acc_adv"},
    "pgd_at_ema": {"train/ce_adv", "val/acc_pgd"},
}


def test_every_recipe_is_listed() -> None:
    assert {p.stem for p in RECIPES.glob("*.yaml") if not p.stem.startswith("callbacks")} == set(EXPECTED_KEYS)


def shrink(recipe: str, root: Path) -> list[str]:
    return [
        "fit",
        "--config",
        str(RECIPES / f"{recipe}.yaml"),
        "--trainer.logger=pytorch_lightning.loggers.CSVLogger",
        f"--trainer.logger.init_args.save_dir={root}",
        f"--trainer.default_root_dir={root}",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1",
        "--trainer.log_every_n_steps=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--data.init_args.train_size=32",
        "--data.init_args.val_size=16",
        "--data.init_args.test_size=16",
        "--data.init_args.batch_size=16",
        "--data.init_args.eval_batch_size=16",
        "--model.eval_attack.init_args.steps=2",
        small_probes(RECIPES / f"{recipe}.yaml", probe_size=8),
    ]


# Settings the two-step runs change beyond their size.
OVERRIDES: dict[str, list[str]] = {"pgd_at_ema": ["--trainer.callbacks.start_step=0"]}  # the last callback


@pytest.mark.parametrize("recipe", sorted(EXPECTED_KEYS))
def test_recipe_trains(recipe: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["train.py"])
    cli = train.main(shrink(recipe, tmp_path) + OVERRIDES.get(recipe, []))
    assert cli.trainer.global_step == 2
    metrics = list(tmp_path.rglob("metrics.csv"))
    assert len(metrics) == 1
    with metrics[0].open() as f:
        rows = list(csv.DictReader(f))
    logged = {key for row in rows for key, value in row.items() if value != ""}
    assert {"train/loss", "val/acc", "val/acc_pgd"} <= logged
    assert EXPECTED_KEYS[recipe] <= logged, EXPECTED_KEYS[recipe] - logged
    # The explanation monitor after the epoch, the sanity check at the end of fit.
    monitored = {"expl/saliency/spearman@noise", "expl/integrated_gradients/relevance_mass", "sanity/saliency/spearman@all"}
    assert monitored <= logged, monitored - logged
    assert list(tmp_path.rglob("last.ckpt")), "ModelCheckpoint saved nothing"
    if recipe == "pgd_at_ema":  # averaged from the first step (the shrunk run has two): saved in place
        saved = torch.load(next(tmp_path.rglob("last.ckpt")), weights_only=True)
        assert saved["weight_average"]["count"] == 2
