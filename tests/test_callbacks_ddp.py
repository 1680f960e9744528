"""Two processes (gloo, CPU) log what one process logs, on the same probe set.

The fast test runs the callbacks' own evaluation (``use_probe`` with a rank and a world size,
then ``evaluate``) in two spawned processes, on an odd-sized probe set split unevenly, and
compares every rank's result with one process on the whole set: the torchmetrics wrappers
reduce, the per-example table is gathered in probe order. The slow test runs a real two-process
``ddp_spawn`` fit with a CSV logger and compares the logged values with a single-process
evaluation of the weights the fit ended with.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch import nn

from attacks import PGD, AutoAttack
from datamodules import ProbeBatch, generate_shapes
from tests.conftest import tiny_trainer_kwargs
from tests.ddp import run_distributed
from tests.monitoring import monitor, robustness, sanity, tiny_data, tiny_model
from tests.tiny import tiny_cnn

N = 11  # shares of 6 and 5


def _evaluate(model: nn.Module, probe: ProbeBatch, rank: int = 0, world_size: int = 1) -> dict[str, Any]:
    explanation = monitor(probe_size=len(probe), batch_size=4, panels=2)
    curve = robustness(probe_size=len(probe), batch_size=4)
    # Random starts and AutoAttack's draws seeded per example: each image's verdict is the same on any rank.
    attacks = [PGD(eps=0.1, step_size=0.03, steps=3, seed=0, loss="margin"), AutoAttack(eps=0.1, version="fast")]
    strong = robustness(eps=[0.0, 0.02, 0.05], attacks=attacks, probe_size=len(probe), batch_size=4, prefix="strong")
    check = sanity(probe_size=len(probe), batch_size=4)
    for callback in (explanation, curve, strong, check):
        callback.use_probe(probe, rank=rank, world_size=world_size)
    scores = explanation.evaluate(model, samples=True, panels=2)
    return {
        "expl": scores.values,
        "samples": scores.samples,
        "panel_ids": scores.ids,
        "robust": curve.evaluate(model) | strong.evaluate(model),
        "examples": strong.accuracy.examples,  # type: ignore[union-attr]
        "sanity": check.evaluate(model).similarity,
    }


def _rank_main(rank: int, world_size: int, model: nn.Module, probe: ProbeBatch) -> dict[str, Any]:
    return _evaluate(model, probe, rank, world_size)


def _probe() -> ProbeBatch:
    data = generate_shapes(N, 3, 16, 1, seed=3)
    return ProbeBatch(data.images, data.labels, torch.arange(N) * 7 + 2, data.masks)


def test_two_processes_log_the_values_of_one(tmp_path: Path) -> None:
    model, probe = tiny_cnn(num_classes=3).eval(), _probe()
    single = _evaluate(model, probe)
    ranks = run_distributed(_rank_main, tmp_path, world_size=2, args=(model, probe))
    assert torch.equal(ranks[0]["panel_ids"], probe.indices[:2]) and torch.equal(ranks[1]["panel_ids"], probe.indices[6:8])
    for result in ranks:  # every rank holds the reduced values
        assert result["expl"].keys() == single["expl"].keys()
        for key, value in single["expl"].items():
            assert result["expl"][key] == pytest.approx(value, rel=1e-4, abs=1e-6, nan_ok=True), key
        assert torch.equal(result["samples"]["id"], probe.indices)
        for key, column in single["samples"].items():
            torch.testing.assert_close(result["samples"][key], column, rtol=1e-4, atol=1e-5, equal_nan=True, msg=key)
        assert result["robust"] == pytest.approx(single["robust"], abs=1e-6)
        assert result["examples"] == N  # every example counted once: 6 + 5, nothing repeated
        assert all(abs(v * N - round(v * N)) < 1e-6 for v in result["robust"].values())
        for method, by_similarity in single["sanity"].items():
            for name, means in by_similarity.items():
                torch.testing.assert_close(result["sanity"][method][name], means, rtol=1e-4, atol=1e-5)


def _logged(log_dir: Path) -> dict[str, float]:
    with open(log_dir / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    values: dict[str, float] = {}
    for row in rows:  # the last value of every key
        values.update({k: float(v) for k, v in row.items() if v and k.startswith(("expl/", "robust/", "sanity/"))})
    return values


@pytest.mark.slow  # two Lightning processes: about 20 s
def test_a_two_process_fit_logs_the_values_one_process_computes_on_its_weights(tmp_path: Path) -> None:
    pl.seed_everything(0)
    dm = tiny_data(val_size=N)
    model = tiny_model(dm, batch_norm=False)
    callbacks = [monitor(probe_size=N, batch_size=4), robustness(probe_size=N, batch_size=4), sanity(probe_size=N)]
    logger = CSVLogger(tmp_path)
    kwargs = tiny_trainer_kwargs() | {"devices": 2, "strategy": "ddp_spawn", "logger": logger, "max_epochs": 1}
    pl.Trainer(**kwargs, callbacks=callbacks).fit(model, dm)  # ddp_spawn hands rank zero's weights back
    (log_dir,) = {p.parent for p in tmp_path.rglob("metrics.csv")}  # written by rank zero
    logged = _logged(log_dir)
    expected = _evaluate(model.model.eval(), dm.probe_batch(N, 0))
    for key, value in expected["expl"].items():
        assert logged[key] == pytest.approx(value, rel=1e-4, abs=1e-6, nan_ok=True), key
    curve = robustness(probe_size=N, batch_size=4)
    curve.use_probe(dm.probe_batch(N, 1))  # the evaluator's own probe set (seed 1)
    assert {k: logged[k] for k in curve.evaluate(model.model)} == pytest.approx(curve.evaluate(model.model), abs=1e-6)
    assert logged["sanity/saliency/spearman@all"] == pytest.approx(float(expected["sanity"]["saliency"]["spearman"][-1]), rel=1e-4)
    # Only rank zero wrote the panels.
    assert len(list((log_dir / "panels" / "saliency").glob("*.png"))) == 1
