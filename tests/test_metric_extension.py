"""A metric defined outside the package is a first-class metric: one class statement makes it
usable by name from a recipe's monitoring callback, from the report (in this process, and by its
import path from a fresh one), from ``compute_metrics``, and under DDP.

Also: the robustness family takes perturbation objects (an attack given as an object equals the
shorthand it reproduces), and every package metric's defaults are its ``__init__``'s.
"""

from __future__ import annotations

import csv
import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import Tensor

from attacks import PGD
from attributions import AttributionMethod, Saliency
from metrics import (
    AttackPerturbation,
    ExplanationMetric,
    ExplanationRobustness,
    MeanScore,
    MetricInputs,
    Similarity,
    build_metric,
    check_metric,
    compute_metric,
    compute_metrics,
    metric_names,
    metric_spec,
)
from metrics.base import check_number
from tests.ddp import run_distributed, split_sizes
from tests.metric_cases import package_metric_names, shapes_batch, tiny_model

REPO = Path(__file__).resolve().parents[1]
IMPORT_PATH = "tests.test_metric_extension.CentreMass"


class CentreMass(MeanScore, name="centre_mass"):
    """Share of the attribution mass Σ_c |Φ_c| inside the central square whose side is
    ``fraction`` of the image's (a crude localisation prior for centred objects). Higher is better.

    Args:
        fraction: side of the central square over the image side, in (0, 1].
    """

    higher_is_better = True

    def __init__(self, fraction: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fraction = check_number("fraction", fraction, 0.0, 1.0, strict=True)

    def score(self, inputs: MetricInputs) -> Tensor:
        maps = inputs.maps  # (B, H, W), shared with every other metric of the batch
        h, w = maps.shape[-2:]
        dh, dw = max(1, round(h * self.fraction)), max(1, round(w * self.fraction))
        top, left = (h - dh) // 2, (w - dw) // 2
        inside = maps[:, top : top + dh, left : left + dw].flatten(1).sum(1)
        return inside / maps.flatten(1).sum(1)  # NaN for an all-zero map: undefined


class Counting(AttributionMethod):
    """Saliency that counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.inner, self.calls = Saliency(), 0

    def attribute(self, model: torch.nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
        self.calls += 1
        return self.inner(model, inputs, target)


# ---------------------------------------------------------------------------------------------
# The registry and the call shapes


def test_a_class_statement_registers_the_metric_with_its_options_and_direction() -> None:
    assert "centre_mass" in metric_names()
    assert "centre_mass" not in package_metric_names()
    spec = metric_spec("centre_mass")
    assert spec.cls is CentreMass and spec.defaults == {"fraction": 0.5} and spec.higher_is_better is True
    assert metric_spec(IMPORT_PATH).name == "centre_mass"
    assert check_metric(IMPORT_PATH, fraction=0.25) == {"fraction": 0.25}
    with pytest.raises(ValueError, match=r"fraction must be a number > 0.0 and <= 1.0, got 2"):
        check_metric("centre_mass", fraction=2)
    with pytest.raises(ValueError, match=r"options of metric 'centre_mass' must be among \('fraction',\), got \['radius'\]"):
        check_metric("centre_mass", radius=1)


def test_an_unknown_name_lists_every_registered_name_including_ones_defined_outside_the_package() -> None:
    with pytest.raises(ValueError) as error:
        check_metric("centre_mas")
    message = str(error.value)
    assert "'centre_mas'" in message
    for name in metric_names():
        assert repr(name) in message


def test_its_scores_have_the_closed_form_and_share_the_batch_with_package_metrics() -> None:
    model, data = tiny_model(), shapes_batch(4)
    uniform = torch.ones_like(data.images)  # |Φ| spread evenly: the share is the square's area
    scores = compute_metric("centre_mass", model, data.images, data.labels, Saliency(), attribution=uniform, fraction=0.5)
    torch.testing.assert_close(scores, torch.full((4,), 64 / 256))
    method = Counting()
    together = compute_metrics(
        ["centre_mass", IMPORT_PATH, "spearman@noise", "relevance_mass"], model, data.images, data.labels, method, data.masks
    )
    assert method.calls == 2  # Φ(x) once for all four, Φ(x') once for spearman@noise
    torch.testing.assert_close(together["centre_mass"], together[IMPORT_PATH])
    assert ((together["centre_mass"] >= 0) & (together["centre_mass"] <= 1)).all()


def test_every_package_metric_defaults_are_its_init_signature_and_what_check_metric_returns() -> None:
    names = package_metric_names()
    assert len(names) >= 26
    for name in names:
        entry = ExplanationMetric.registry.entry(name)
        signature = inspect.signature(entry.cls).parameters.values()
        declared = {p.name: p.default for p in signature if p.name not in entry.fixed and p.kind is not p.VAR_KEYWORD}
        assert all(value is not inspect.Parameter.empty for value in declared.values()), name
        assert check_metric(name) == declared, name
        assert metric_spec(name).defaults == declared, name
        metric = build_metric(name)
        assert type(metric).higher_is_better in (True, False) and metric.full_state_update is False, name


def test_robustness_names_are_the_registered_similarities_times_the_perturbations_with_defaults() -> None:
    robustness = {name for name in metric_names() if issubclass(metric_spec(name).cls, ExplanationRobustness)}
    expected = {f"{s}@{p}" for s in Similarity.registry.names() for p in ("noise", "pgd", "topk_attack")}
    assert robustness == expected and len(expected) == 12
    assert build_metric("kendall@pgd").name == "kendall@pgd"


def test_an_attack_object_as_perturbation_equals_the_shorthand_it_reproduces_and_is_shared() -> None:
    model, data = tiny_model(), shapes_batch(6)
    steps, eps = 3, 0.1
    pgd = PGD(eps=eps, step_size=2.5 * eps / steps, steps=steps, random_start=False)  # ClassifierPGD's attack
    attack = AttackPerturbation(pgd)
    objects = [ExplanationRobustness("spearman", attack), ExplanationRobustness("cosine", attack)]
    method = Counting()
    by_object = compute_metrics(objects, model, data.images, data.labels, method)
    assert method.calls == 2  # one x' and one Φ(x') for both similarities
    assert set(by_object) == {f"spearman@{pgd.name}", f"cosine@{pgd.name}"}
    by_name = compute_metrics(
        ["spearman@pgd", "cosine@pgd"], model, data.images, data.labels, Saliency(), options={n: {"steps": steps} for n in ("spearman@pgd", "cosine@pgd")}
    )
    torch.testing.assert_close(by_object[f"spearman@{pgd.name}"], by_name["spearman@pgd"])
    torch.testing.assert_close(by_object[f"cosine@{pgd.name}"], by_name["cosine@pgd"])
    # The same attack given as a class_path node, as a recipe would write it.
    node = {"class_path": "attacks.PGD", "init_args": {"eps": eps, "step_size": 2.5 * eps / steps, "steps": steps, "random_start": False}}
    from_node = compute_metric(ExplanationRobustness("spearman", AttackPerturbation(node)), model, data.images, data.labels, Saliency())
    torch.testing.assert_close(from_node, by_name["spearman@pgd"])
    with pytest.raises(ValueError, match="attack must be an attacks.EvaluationAttack"):
        AttackPerturbation(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="criterion must be one of"):
        ExplanationRobustness(CentreSimilarity(), "topk_attack")
    with pytest.raises(ValueError, match="k must be set on the TopKAttack"):
        ExplanationRobustness("kendall", "topk_attack", k=5)
    assert check_metric("kendall@topk_attack", k=5)["k_score"] == 5  # the shorthand routes k to the attack


class CentreSimilarity(Similarity):
    """An unregistered similarity (used as an object only, so no shorthand names are added)."""

    def __call__(self, maps: Tensor, perturbed_maps: Tensor, k: int | None = None) -> Tensor:
        return -(maps - perturbed_maps).abs().flatten(1).sum(1)


# ---------------------------------------------------------------------------------------------
# DDP: the metric by its import path in two processes equals one process


N = 10


def _score_share(model: torch.nn.Module, data: dict[str, Tensor], share: slice) -> dict[str, Tensor]:
    ids = torch.arange(N)[share]
    return compute_metrics([IMPORT_PATH, "spearman@noise"], model, data["images"][share], data["labels"][share], Saliency(), example_ids=ids)


def _accumulate(scores: dict[str, Tensor]) -> dict[str, Tensor]:
    results = {}
    for name, values in scores.items():
        metric = build_metric(name)
        metric.update(values[:2])
        metric.update(values[2:])
        results[name] = metric.compute()
        with metric.sync_context():
            results[name + "/count"] = metric.count.clone()
    return results


def _rank_main(rank: int, world_size: int, model: torch.nn.Module, data: dict[str, Tensor]) -> dict[str, Tensor]:
    sizes = split_sizes(N, world_size)
    start = sum(sizes[:rank])
    return _accumulate(_score_share(model, data, slice(start, start + sizes[rank])))


@pytest.mark.slow  # two spawned processes: about a minute on a shared CPU
def test_a_metric_named_by_its_import_path_reduces_across_two_processes_as_in_one(tmp_path: Path) -> None:
    shapes = shapes_batch(N)
    model, data = tiny_model(), {k: getattr(shapes, k) for k in ("images", "labels")}
    single = _accumulate(_score_share(model, data, slice(0, N)))
    assert int(single[IMPORT_PATH + "/count"]) == N
    for result in run_distributed(_rank_main, tmp_path, world_size=2, args=(model, data)):
        for name, value in single.items():
            torch.testing.assert_close(result[name], value, rtol=1e-5, atol=1e-6, msg=name)


# ---------------------------------------------------------------------------------------------
# A recipe's monitor and the report


def _monitor_recipe(path: Path) -> Path:
    callbacks = [
        {
            "class_path": "callbacks.ExplanationMonitor",
            "init_args": {
                "methods": ["saliency"],
                "metrics": ["centre_mass", "spearman@noise"],
                "metric_options": {"centre_mass": {"fraction": 0.25}},
                "probe_size": 8,
                "every_n_epochs": 1,
                "panels": 0,
                "table": False,
            },
        }
    ]
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    return path


@pytest.fixture(scope="module")
def monitored_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One short epoch of the synthetic ERM recipe with the monitor above, parsed by LightningCLI."""
    import train

    root = tmp_path_factory.mktemp("extension")
    cli = train.main(
        [
            "fit",
            "--config", str(REPO / "configs" / "synthetic" / "erm.yaml"),
            "--config", str(_monitor_recipe(root / "monitor.yaml")),
            "--trainer.max_epochs=1",
            "--trainer.limit_val_batches=1",
            "--trainer.logger=pytorch_lightning.loggers.CSVLogger",
            f"--trainer.logger.init_args.save_dir={root}",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            "--trainer.num_sanity_val_steps=0",
            "--model.backbone_kwargs={width: 4, hidden: 16}",
            "--model.eval_attack.init_args.steps=1",
            "--data.init_args.image_size=16",
            "--data.init_args.num_classes=3",
            "--data.init_args.train_size=64",
            "--data.init_args.val_size=16",
            "--data.init_args.test_size=16",
            "--data.init_args.batch_size=32",
        ]
    )  # fmt: skip
    checkpoint = root / "final.ckpt"
    cli.trainer.save_checkpoint(checkpoint)
    logged = next(root.rglob("metrics.csv"))
    return {"root": root, "checkpoint": checkpoint, "metrics_csv": logged}


def test_a_recipe_names_the_metric_in_its_monitor_and_the_run_logs_it(monitored_run: dict[str, Path]) -> None:
    rows = list(csv.DictReader(monitored_run["metrics_csv"].open()))
    values = [float(row["expl/saliency/centre_mass"]) for row in rows if row.get("expl/saliency/centre_mass")]
    assert len(values) == 1 and 0.0 <= values[0] <= 1.0
    assert any(row.get("expl/saliency/spearman@noise") for row in rows)


def _report_args(checkpoint: Path, out: Path, metric: str) -> list[str]:
    return [
        "report", "--no_progress", "--ckpt_path", str(checkpoint), "--out_dir", str(out),
        "--methods", "[saliency]", "--metrics", f"[{metric}]", "--metric_options", f"{{{metric}: {{fraction: 0.25}}}}",
        "--num_examples", "8", "--figure_examples", "2", "--attacks", "[pgd-ce]", "--attack_steps", "1",
        "--accuracy_examples", "8",
    ]  # fmt: skip


def test_the_report_computes_the_metric_by_name(monitored_run: dict[str, Path], tmp_path: Path) -> None:
    import train

    out = tmp_path / "report"
    train.main(_report_args(monitored_run["checkpoint"], out, "centre_mass"))
    record = json.loads((out / _json_name()).read_text())
    cell = record["metrics"]["saliency"]["centre_mass"]
    assert cell["count"] + cell["undefined"] == 8 and 0.0 <= cell["value"] <= 1.0
    assert record["settings"]["metrics"]["centre_mass"] == {"fraction": 0.25}


@pytest.mark.slow  # a fresh interpreter importing Lightning: half a minute on a shared CPU
def test_a_fresh_process_report_finds_the_metric_by_its_import_path(monitored_run: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = subprocess.run(
        [sys.executable, "train.py", *_report_args(monitored_run["checkpoint"], out, IMPORT_PATH)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((out / _json_name()).read_text())
    assert 0.0 <= record["metrics"]["saliency"][IMPORT_PATH]["value"] <= 1.0


def _json_name() -> str:
    from report import FILES

    return FILES["json"]
