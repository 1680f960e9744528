"""What the monitoring callbacks leave in a run: W&B offline (history, media, summary, read back
from the run directory), CSV (metrics.csv and PNG panels), and the recipe's errors."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import wandb
import yaml
from PIL import Image
from pytorch_lightning.loggers import CSVLogger

import train
from tests.monitoring import BATCHES_PER_EPOCH, fit, monitor, robustness, sanity
from tests.wandb_offline import find_run_dirs, read_run

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "configs" / "quickstart.yaml"


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_csv_logger_gets_the_scalars_in_metrics_csv_and_the_panels_as_png(tmp_path: Path) -> None:
    callbacks: list[pl.Callback] = [monitor(every_n_steps=4), robustness(every_n_epochs=1), sanity()]
    logger = CSVLogger(tmp_path)
    fit(callbacks, epochs=2, logger=logger)
    run = Path(logger.log_dir)
    rows = _rows(run / "metrics.csv")

    def steps(key: str) -> list[int]:
        return [int(r["step"]) for r in rows if r.get(key)]

    assert steps("expl/integrated_gradients/spearman@noise") == [4, 8, 12]  # every 4 of 12 steps
    assert steps("expl/seconds") == [4, 8, 12]
    assert steps("robust/acc@eps=0.05") == [BATCHES_PER_EPOCH, 2 * BATCHES_PER_EPOCH]  # every epoch
    assert steps("sanity/saliency/spearman@all") == [12]
    last = [r for r in rows if r.get("expl/saliency/relevance_mass")][-1]
    for key, value in callbacks[0].last.values.items():  # type: ignore[union-attr]
        assert float(last[key]) == pytest.approx(value, nan_ok=True)

    for method in ("saliency", "integrated_gradients"):
        files = sorted((run / "panels" / method).glob("*.png"))
        assert [f.name for f in files] == ["step0000004.png", "step0000008.png", "step0000012.png"]
        with Image.open(files[0]) as image:
            # 3 examples of 16 × 16 shown at 96 × 96, under a header; 5 tiles (with the mask).
            assert image.size == (5 * 96 + 4 * 2, 14 + 3 * (96 + 2))
    samples = _rows(run / "panels" / "samples_step0000012.csv")
    assert len(samples) == 12 and {"id", "label", "prediction", "saliency/spearman@noise"} <= set(samples[0])
    table = _rows(run / "sanity_check.csv")
    layers = callbacks[2].last.layers  # type: ignore[union-attr]
    assert len(table) == 2 * 2 * len(layers)  # methods × similarities × stages
    assert {r["method"] for r in table} == {"saliency", "edge"}


def _shrunk_quickstart(tmp_path: Path, *extra: str, config: Path = QUICKSTART) -> list[str]:
    return [
        "fit",
        "--config",
        str(config),
        "--trainer.max_epochs=2",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--data.init_args.train_size=96",
        "--data.init_args.val_size=128",  # the callbacks' probe sets: 64 and 128
        "--data.init_args.test_size=16",
        "--data.init_args.batch_size=32",
        "--model.backbone_kwargs={width: 4, hidden: 16}",
        "--model.objective.init_args.attack.init_args.steps=2",
        "--model.eval_attack.init_args.steps=2",
        *extra,
    ]


def test_quickstart_run_read_back_from_wandb_offline_holds_curves_panels_and_the_sanity_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train.main(_shrunk_quickstart(tmp_path))
    (run_dir,) = find_run_dirs(tmp_path)
    run = read_run(run_dir)

    def steps(key: str) -> list[int]:
        return [row["trainer/global_step"] for row in run.history if key in row]

    # 3 steps per epoch; the monitor runs every epoch, the robustness curve every 2 epochs.
    for method in ("saliency", "integrated_gradients"):
        for metric in ("topk_intersection@noise", "spearman@noise", "relevance_mass", "pointing_game"):
            assert steps(f"expl/{method}/{metric}") == [3, 6]
            assert all(0.0 <= v <= 1.0 for v in run.column(f"expl/{method}/{metric}") if v == v)
        assert steps(f"panels/{method}/filenames") == [3, 6]
    assert steps("expl/seconds") == [3, 6] and steps("expl/samples/path") == [3, 6]
    for eps in ("0", "0.05", "0.1", "0.15"):
        assert steps(f"robust/acc@eps={eps}") == [6]
    curve = [run.column(f"robust/acc@eps={eps}")[0] for eps in ("0", "0.05", "0.1", "0.15")]
    assert curve == sorted(curve, reverse=True)
    assert steps("robust/pgd10-ce/acc@eps=0.1") == [6]
    # AutoAttack once, when the fit ends, on the last weights; printed beside the checkpoint paths.
    assert steps("robust_final/autoattack-fast/acc@eps=0.1") == [6] and steps("robust_final/seconds") == [6]
    final = run.column("robust_final/autoattack-fast/acc@eps=0.1")[0]
    assert f"robust accuracy of the last weights: autoattack-fast {final:.3f} at ε=0.1" in capsys.readouterr().out

    images = list((run_dir / "files" / "media" / "images" / "panels").glob("*.png"))
    assert len(images) == 2 * 2 * 8  # 2 evaluations × 2 methods × 8 examples
    captions = run.column("panels/saliency/captions")[-1]
    assert len(captions) == 8 and all(" · label " in c and " · pred " in c and "spearman@noise" in c for c in captions)

    for method in ("saliency", "integrated_gradients", "edge"):
        for similarity in ("spearman", "ssim"):
            assert f"sanity/{method}/{similarity}@all" in run.summary
    assert run.summary["sanity/edge/spearman@all"] == pytest.approx(1.0)
    assert "sanity/seconds" in run.summary
    (table,) = (run_dir / "files" / "media" / "table" / "sanity").glob("randomisation*.table.json")
    content = json.loads(table.read_text())
    assert content["columns"] == ["method", "similarity", "stage", "layer", "mean_similarity"]
    assert len(content["data"]) == 3 * 2 * 6  # methods × similarities × layers of small_cnn


def _recipe_with(tmp_path: Path, index: int, **init_args: object) -> Path:
    config = yaml.safe_load(QUICKSTART.read_text())
    callbacks = config["trainer"]["callbacks"]
    node = copy.deepcopy(callbacks[index])
    node["init_args"].update(init_args)
    callbacks[index] = node
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _index(class_path: str) -> int:
    callbacks = yaml.safe_load(QUICKSTART.read_text())["trainer"]["callbacks"]
    return next(i for i, c in enumerate(callbacks) if c["class_path"] == class_path)


@pytest.mark.parametrize(
    "class_path, option, value, field",
    [
        ("callbacks.ExplanationMonitor", "every_n_epochs", 0, "init_args.every_n_epochs: every_n_epochs must be"),
        ("callbacks.ExplanationMonitor", "metrics", ["spearman@noise", "nope"], "init_args.metrics: metrics must be among"),
        ("callbacks.ExplanationMonitor", "methods", ["saliency", "nope"], "init_args.methods: methods must be among"),
        ("callbacks.RobustnessEvaluator", "eps", [0.1, 2.0], "init_args.eps: eps must hold radii"),
        ("callbacks.SanityCheck", "similarities", ["pearson"], "trainer.callbacks.similarities"),
    ],
)
def test_bad_callback_options_in_a_recipe_fail_when_the_trainer_is_built_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], class_path: str, option: str, value: object, field: str
) -> None:
    index = _index(class_path)
    recipe = _recipe_with(tmp_path, index, **{option: value})
    with pytest.raises(SystemExit) as exit_info:
        train.main(_shrunk_quickstart(tmp_path / "out", config=recipe))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid configuration") and field in err
    if field.startswith("init_args"):
        assert f"trainer.callbacks[{index}].{field}" in err
    assert not (tmp_path / "out").exists()


def test_a_probe_set_larger_than_the_validation_split_stops_the_recipe_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = _recipe_with(tmp_path, _index("callbacks.RobustnessEvaluator"), probe_size=129)
    expected = "probe_size must be at most 128 (the size of the val split of SyntheticShapes) for RobustnessEvaluator, got 129"
    with pytest.raises(SystemExit) as exit_info:
        train.main(_shrunk_quickstart(tmp_path / "out", config=recipe))
    assert exit_info.value.code == 2
    assert "trainer.callbacks: RobustnessEvaluator: " + expected in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # stopped before the W&B run, the run folder or a checkpoint
