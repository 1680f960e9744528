"""The GPU suite (benchmarks/gpu_suite.py): its device check and its toy run on the CPU, so that
the command stays runnable between the rare occasions a GPU is there to run it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_suite

LOOPS = (
    "train.py fp32",
    "train.py bf16-mixed",
    "hand bf16",
    "hand bf16 channels_last",
    "hand bf16 channels_last compiled",
)
TOY_MODELS = ("PreAct ResNet-18 (toy: width 4)", "WRN-10-1 (toy)")
OTHER_ROWS = (
    "PGD-2 AT (train.py bf16-mixed)",
    "TRADES β=6, 2 steps (train.py bf16-mixed)",
    "PGD-AT + attribution stability (train.py bf16-mixed)",
    "fit without monitoring callbacks",
    "fit with monitoring callbacks",
    "AutoAttack fast, ε = 8/255",
    "AutoAttack standard, ε = 8/255",
)


def test_cuda_is_refused_without_cuda_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is present here: the refusal cannot be observed")
    out = tmp_path / "suite.md"
    with pytest.raises(SystemExit) as stopped:
        gpu_suite.main(["--device", "cuda", "--out", str(out)])
    assert stopped.value.code == 2
    message = capsys.readouterr().err
    assert "--device cuda" in message and "torch.cuda.is_available() is False" in message and "--device cpu --toy" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--device", "cpu", "--toy", "--compile", "resnet50"], "--compile"),
        (["--device", "tpu"], "--device"),
        (["--device", "cpu", "--toy", "--out", "table.txt"], "--out"),
    ],
)
def test_bad_arguments_stop_before_any_work(
    argv: list[str], named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        gpu_suite.main(argv)
    assert stopped.value.code == 2
    assert named in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _positive(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


# In the default run so that the suite never rots: about 15 s on an idle 2-core CPU (17 measurements, 15 of them Lightning fits).
def test_toy_run_writes_every_row_with_positive_timings(tmp_path: Path) -> None:
    out = tmp_path / "toy.md"
    assert gpu_suite.main(["--device", "cpu", "--toy", "--out", str(out)]) == 0
    table = out.read_text()
    written = json.loads(out.with_suffix(".json").read_text())
    for key in ("torch", "cuda", "device_name", "date", "command", "sizes"):
        assert key in written
    assert written["device"] == "cpu" and "--toy" in written["command"]
    rows = {(r["name"], r["model"]): r for r in written["rows"]}
    expected = [(loop, model) for model in TOY_MODELS for loop in LOOPS] + [(name, TOY_MODELS[0]) for name in OTHER_ROWS]
    assert sorted(rows) == sorted(expected)
    lines = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| measurement")]
    assert len(lines) == len(expected)
    for line in lines:
        assert "n/a (CPU)" in line  # no GPU memory figure on the CPU
    for (name, model), row in rows.items():
        assert row["status"] == "ok", (name, row["status"])
        assert row["peak_memory_bytes"] is None
        assert any(name in line and model in line for line in lines), name
        if row["section"] in ("PGD-2 AT", "penalties"):
            assert _positive(row["images_per_s"]) and _positive(row["step_ms"])
            assert len(row["window_seconds"]) == written["sizes"]["windows"]
            assert all(_positive(s) for s in row["window_seconds"])
        elif row["section"] == "callbacks":
            assert all(_positive(s) for s in row["fit_seconds"].values())
        else:
            assert _positive(row["seconds_per_1000"]) and row["extra"]["scaled_to_1000"]
            # The toy attacks correctly classified images first, so the attacks really run.
            first = row["extra"]["stages"][0]
            assert first["attack"] == "apgd-ce" and first["attacked"] >= 1 and _positive(first["seconds"])
    # Each ratio is the quotient of the figures it names, measured in this run.
    for model in TOY_MODELS:
        reference = rows[("hand bf16 channels_last", model)]["images_per_s"]
        for loop in LOOPS:
            row = rows[(loop, model)]
            assert row["relative"] == pytest.approx(row["images_per_s"] / reference)
    pgd = rows[("PGD-2 AT (train.py bf16-mixed)", TOY_MODELS[0])]["step_ms"]
    trades = rows[("TRADES β=6, 2 steps (train.py bf16-mixed)", TOY_MODELS[0])]
    assert trades["relative"] == pytest.approx(trades["step_ms"] / pgd)
    fits = {mode: rows[(f"fit {mode} monitoring callbacks", TOY_MODELS[0])]["fit_seconds"]["median"] for mode in ("with", "without")}
    share = rows[("fit with monitoring callbacks", TOY_MODELS[0])]
    assert share["relative"] == pytest.approx(1 - fits["without"] / fits["with"])
    assert set(share["extra"]["callback_own_seconds"]) >= {"ExplanationMonitor", "SanityCheck"}
