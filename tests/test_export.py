"""Export bundles load with plain PyTorch and reproduce the model; bad checkpoints fail clearly."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

import train
from callbacks import CHECKPOINT_KEY
from export import FILES, CheckpointError, export_bundle, load_bundle, load_classifier, read_checkpoint
from export.checkpoint import load_weights
from lightning_modules import build_model

REPO = Path(__file__).resolve().parents[1]


def shrunk_quickstart(save_dir: Path, *extra: str) -> list[str]:
    """The quickstart recipe, one short epoch on a few examples, logging to CSV in ``save_dir``."""
    return [
        "fit",
        "--config",
        str(REPO / "configs" / "quickstart.yaml"),
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=3",
        "--trainer.limit_val_batches=1",
        "--data.init_args.train_size=96",
        "--data.init_args.val_size=128",  # the quickstart callbacks draw probe sets of 64 and 128
        "--data.init_args.test_size=32",
        "--data.init_args.batch_size=32",
        "--trainer.logger=pytorch_lightning.loggers.CSVLogger",
        f"--trainer.logger.init_args.save_dir={save_dir}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.num_sanity_val_steps=0",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A quickstart model trained for 3 steps through train.main, and its checkpoints."""
    root = tmp_path_factory.mktemp("run")
    cli = train.main(shrunk_quickstart(root))
    callback = cli.trainer.checkpoint_callback
    return {
        "cli": cli,
        "last": Path(callback.last_model_path),
        "best": Path(callback.best_model_path),
        "root": root,
    }


@pytest.fixture(scope="module")
def bundle(trained, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("export") / "bundle"
    train.main(["export", "--ckpt_path", str(trained["last"]), "--out_dir", str(out), "--wandb", "off"])
    return out


def reference(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and saliency (gradient of the target logit w.r.t. the input) of ``model`` in eval mode."""
    was_training = model.training
    model.eval()
    x = x.clone().requires_grad_(True)
    logits = model(x)
    (saliency,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), [x])
    model.train(was_training)
    return logits.detach(), saliency


OUTSIDE_SCRIPT = textwrap.dedent(
    """
    import importlib, json, sys
    import torch
    from safetensors.torch import load_file

    for name in ("losses", "attacks", "datamodules", "export", "lightning_modules"):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        raise SystemExit(f"the project is importable here: {name}")

    bundle = sys.argv[1]
    meta = json.load(open(f"{bundle}/bundle.json"))
    program = torch.export.load(f"{bundle}/model.pt2")
    model = program.module()
    inputs = torch.load("inputs.pt", weights_only=True)
    x, target = inputs["x"].requires_grad_(True), inputs["target"]
    logits = model(x)
    (saliency,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), [x])
    unflat = torch.export.unflatten(program)
    unflat.eval()
    weights = load_file(f"{bundle}/model.safetensors")
    state_dict = torch.load(f"{bundle}/state_dict.pt", weights_only=True)
    torch.save(
        {
            "logits": logits.detach(),
            "saliency": saliency,
            "one": model(x[:1].detach()).detach(),
            "unflattened": unflat(x.detach()).detach(),
            "weights": weights,
            "state_dict": state_dict,
            "class_names": meta["dataset"]["class_names"],
            "input_shape": meta["dataset"]["input_shape"],
            "value_range": meta["dataset"]["value_range"],
        },
        "outputs.pt",
    )
    """
)


def test_bundle_loads_without_the_project_and_reproduces_logits_and_saliency(trained, bundle, tmp_path: Path) -> None:
    model = trained["cli"].model.model  # the live classifier; last.ckpt holds its final state
    dm = trained["cli"].datamodule
    probe = dm.probe_batch(16, seed=3)
    target = (probe.y + 1) % dm.num_classes  # not always the predicted class
    torch.save({"x": probe.x, "target": target}, tmp_path / "inputs.pt")
    (tmp_path / "outside.py").write_text(OUTSIDE_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "outside.py", str(bundle)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = torch.load(tmp_path / "outputs.pt", weights_only=True)

    logits, saliency = reference(model, probe.x, target)
    torch.testing.assert_close(out["logits"], logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["saliency"], saliency, rtol=1e-5, atol=1e-7)
    assert saliency.abs().sum() > 0
    torch.testing.assert_close(out["one"], logits[:1], rtol=1e-5, atol=1e-5)  # any batch size
    torch.testing.assert_close(out["unflattened"], logits, rtol=1e-5, atol=1e-5)

    # The plain state_dict: the whole model (normalisation included), no prefixes.
    expected_keys = set(model.state_dict())
    assert set(out["weights"]) == expected_keys == set(out["state_dict"])
    assert not any(k.startswith(("model.", "module.")) for k in out["weights"])
    assert {"normalize.mean", "normalize.std"} <= expected_keys
    for key, value in model.state_dict().items():
        assert torch.equal(out["weights"][key], value) and torch.equal(out["state_dict"][key], value)
    assert out["class_names"] == dm.class_names
    assert out["input_shape"] == list(dm.input_shape) and out["value_range"] == [0.0, 1.0]


def test_plain_state_dict_loads_into_the_architecture(trained, bundle) -> None:
    meta = json.loads((bundle / FILES["metadata"]).read_text())
    arch = {k: meta["model"][k] for k in ("backbone", "num_classes", "input_shape", "mean", "std", "backbone_kwargs")}
    fresh = build_model(**arch).eval()
    fresh.load_state_dict(torch.load(bundle / FILES["state_dict"], weights_only=True))
    x = trained["cli"].datamodule.probe_batch(8, seed=0).x
    torch.testing.assert_close(fresh(x), reference(trained["cli"].model.model, x, torch.zeros(8, dtype=torch.long))[0])
    reloaded = load_bundle(bundle)
    torch.testing.assert_close(reloaded.model(x), fresh(x))


def test_bundle_records_config_metrics_and_card(trained, bundle) -> None:
    assert sorted(p.name for p in bundle.iterdir()) == sorted(FILES.values())
    meta = json.loads((bundle / FILES["metadata"]).read_text())
    dm = trained["cli"].datamodule
    assert meta["dataset"]["name"] == "SyntheticShapes" and meta["dataset"]["num_classes"] == dm.num_classes
    assert meta["model"]["backbone"] == "small_cnn"
    assert meta["export"]["program_check"]["max_abs_logit_difference"] <= 1e-5
    for name, digest in meta["sha256"].items():
        from export.bundle import sha256

        assert sha256(bundle / name) == digest

    config = yaml.safe_load((bundle / FILES["config"]).read_text())
    assert config["model"]["objective"]["class_path"] == "losses.PGDAdversarialTraining"
    assert config["model"]["objective"]["init_args"]["attack"]["init_args"]["eps"] == 0.1
    assert config["data"]["init_args"]["train_size"] == 96

    metrics = json.loads((bundle / FILES["metrics"]).read_text())
    logged = trained["cli"].trainer.callback_metrics
    assert metrics["clean_accuracy"]["val/acc"] == pytest.approx(float(logged["val/acc"]))
    assert metrics["pgd_accuracy"]["val/acc_pgd"] == pytest.approx(float(logged["val/acc_pgd"]))
    assert metrics["pgd_attack"]["init_args"]["steps"] == 10
    card = (bundle / FILES["model_card"]).read_text()
    assert "torch.export.load" in card and "PGDAdversarialTraining" in card and "val/acc_pgd" in card


def test_checkpoints_describe_themselves_and_still_resume(trained, tmp_path: Path) -> None:
    checkpoint = torch.load(trained["last"], map_location="cpu", weights_only=True)
    meta = checkpoint[CHECKPOINT_KEY]
    assert meta["data"]["class_names"] == trained["cli"].datamodule.class_names
    assert yaml.safe_load(meta["config"])["model"]["backbone"] == "small_cnn"
    assert set(meta["metrics"]) >= {"val/acc", "val/acc_pgd", "train/loss"}

    steps = trained["cli"].trainer.global_step
    resumed = train.main(
        shrunk_quickstart(tmp_path, "--trainer.max_epochs=2", f"--ckpt_path={trained['last']}")
    )
    assert resumed.trainer.global_step == steps + 3 and resumed.trainer.current_epoch == 2


def damaged_copies(source: Path, folder: Path) -> dict[str, Path]:
    data = source.read_bytes()
    with zipfile.ZipFile(source) as archive:  # flip a byte inside the largest tensor's data
        info = max(archive.infolist(), key=lambda i: i.file_size)
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.file_size // 2
    flipped = bytearray(data)
    flipped[start] ^= 0xFF
    variants = {
        "truncated": data[: len(data) // 2],
        "tail_cut": data[:-20],
        "empty": b"",
        "text": b"not a checkpoint\n",
        "flipped": bytes(flipped),
    }
    paths = {}
    for name, content in variants.items():
        paths[name] = folder / f"{name}.ckpt"
        paths[name].write_bytes(content)
    return paths


@pytest.mark.parametrize("variant", ["truncated", "tail_cut", "empty", "text", "flipped"])
def test_damaged_checkpoint_gives_a_clear_error(trained, tmp_path: Path, variant: str, capsys) -> None:
    path = damaged_copies(trained["last"], tmp_path)[variant]
    with pytest.raises(CheckpointError) as info:
        load_classifier(path)
    message = str(info.value)
    assert str(path) in message and ("truncated" in message or "corrupted" in message)
    assert "miniz" not in message and "PytorchStreamReader" not in message
    out_dir = tmp_path / "bundle"
    with pytest.raises(SystemExit) as exit_info:
        train.main(["export", "--ckpt_path", str(path), "--out_dir", str(out_dir)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: checkpoint {path}") and "Traceback" not in err
    assert not out_dir.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle")]


class _Payload:
    """Unpickling this would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_holding_code_is_refused_without_running_it(trained, tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    checkpoint = torch.load(trained["last"], map_location="cpu", weights_only=True)
    checkpoint["extra"] = _Payload(marker)
    torch.save(checkpoint, tmp_path / "code.ckpt")
    with pytest.raises(CheckpointError, match=r"code\.ckpt holds Python objects other than tensors"):
        load_classifier(tmp_path / "code.ckpt")
    assert not marker.exists()


def test_foreign_checkpoints_are_named(trained, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="absent.ckpt does not exist"):
        read_checkpoint(tmp_path / "absent.ckpt")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match=r"plain\.pt is not a Lightning checkpoint"):
        read_checkpoint(tmp_path / "plain.pt")
    checkpoint = torch.load(trained["last"], map_location="cpu", weights_only=True)
    del checkpoint["hyper_parameters"]["backbone"]
    torch.save(checkpoint, tmp_path / "nohp.ckpt")
    with pytest.raises(CheckpointError, match=r"nohp\.ckpt is not a robustlens RobustClassifier checkpoint.*backbone"):
        read_checkpoint(tmp_path / "nohp.ckpt")


def test_checkpoint_of_another_architecture_is_named(trained, tmp_path: Path) -> None:
    checkpoint = torch.load(trained["last"], map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["backbone_kwargs"] = {"width": 8, "hidden": 128}  # weights are width 16
    torch.save(checkpoint, tmp_path / "other.ckpt")
    expected = r"other\.ckpt do not fit this architecture: .*shape mismatch.*net\.features\.0\.weight"
    with pytest.raises(CheckpointError, match=expected):
        load_classifier(tmp_path / "other.ckpt")
    preact = build_model("preact_resnet18", 4, (1, 28, 28), (0.5,), (0.25,), backbone_kwargs={"width": 4})
    small = torch.load(trained["last"], map_location="cpu", weights_only=True)["state_dict"]
    state = {k[len("model.") :]: v for k, v in small.items() if k.startswith("model.")}
    with pytest.raises(CheckpointError, match=r"small\.pt do not fit .*missing \d+ tensor.*unexpected"):
        load_weights(preact, state, "small.pt")


def test_export_refuses_to_clobber_and_overwrites_on_request(trained, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="out_dir .* is not empty"):
        export_bundle(trained["best"], out)
    assert (out / "mine.txt").exists()
    bundle = export_bundle(trained["best"], out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES.values())
    assert bundle.total_bytes == sum(p.stat().st_size for p in out.iterdir())
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no staging folder left behind


def artifacts_of_offline_runs(root: Path) -> list[dict]:
    """The artifact records in every offline W&B run under ``root``."""
    from wandb.proto import wandb_internal_pb2 as pb

    from tests.wandb_offline import _records, find_run_dirs

    found = []
    for run_dir in find_run_dirs(root):
        for raw in _records(next(run_dir.glob("run-*.wandb"))):
            record = pb.Record()
            record.ParseFromString(raw)
            if record.WhichOneof("record_type") == "artifact":
                artifact = record.artifact
                found.append(
                    {
                        "name": artifact.name,
                        "type": artifact.type,
                        "aliases": list(artifact.aliases),
                        "files": sorted(entry.path for entry in artifact.manifest.contents),
                        "run": run_dir.name,
                    }
                )
    return found


@pytest.mark.slow  # two W&B runs: about 10 s
def test_export_callback_and_command_log_offline_artifacts(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = shrunk_quickstart(tmp_path, "--trainer.callbacks+=callbacks.ExportBundle")
    logger_at = args.index("--trainer.logger=pytorch_lightning.loggers.CSVLogger")
    args[logger_at : logger_at + 2] = [f"--trainer.logger.init_args.save_dir={tmp_path}"]  # the recipe's WandbLogger
    cli = train.main(args)
    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    bundle_dir = best.parent.parent / "bundle"
    meta = json.loads((bundle_dir / FILES["metadata"]).read_text())
    assert meta["source_checkpoint"]["path"] == str(best.resolve())
    run_id = cli.trainer.logger.version
    assert meta["training"]["wandb_run_id"] == run_id
    cli.trainer.logger.experiment.finish()
    # The export command, on a checkpoint whose recipe logged to W&B, logs the bundle too, in a
    # run of its own in the same (offline) project.
    train.main(["export", "--ckpt_path", str(best), "--out_dir", str(tmp_path / "exported")])
    # wandb-core writes an artifact record once it has staged the files, which can be after
    # finish() returns: wait for both (a few seconds at most).
    deadline = time.monotonic() + 60
    while len(found := artifacts_of_offline_runs(tmp_path)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    by_run = {a["run"].rsplit("-", 1)[-1]: a for a in found}
    assert len(by_run) == 2 and run_id in by_run
    for artifact in by_run.values():
        assert artifact["name"] == f"model-{run_id}" and artifact["type"] == "model"
        assert artifact["files"] == sorted(FILES.values())
    assert "best" in by_run[run_id]["aliases"]


def test_export_callback_rejects_an_unmonitored_metric_before_training(tmp_path: Path, capsys) -> None:
    args = shrunk_quickstart(
        tmp_path, "--trainer.callbacks+=callbacks.ExportBundle", "--trainer.callbacks.init_args.monitor=val/acc"
    )
    with pytest.raises(SystemExit) as exit_info:
        train.main(args)
    assert exit_info.value.code == 2
    expected = r"trainer\.callbacks\[6\]\.init_args\.monitor: monitor must be the metric of a ModelCheckpoint callback, got 'val/acc'.*val/acc_pgd"
    assert re.search(expected, capsys.readouterr().err)
    assert not list(tmp_path.rglob("*"))


def test_checkpoint_saved_outside_the_cli_still_exports(trained, tmp_path: Path) -> None:
    checkpoint = torch.load(trained["last"], map_location="cpu", weights_only=True)
    del checkpoint[CHECKPOINT_KEY]
    torch.save(checkpoint, tmp_path / "bare.ckpt")
    bundle = export_bundle(tmp_path / "bare.ckpt", tmp_path / "bundle")
    assert bundle.metadata["dataset"]["name"] == "SyntheticShapes"
    assert bundle.metadata["dataset"]["class_names"] == ["0", "1", "2", "3"]
    assert "no resolved recipe" in (bundle.directory / FILES["config"]).read_text()
    config = yaml.safe_load((bundle.directory / FILES["config"]).read_text())
    assert config["model"]["backbone"] == "small_cnn" and config["data"]["init_args"]["train_size"] == 96
    assert bundle.metrics["logged"] == {} and bundle.metrics["checkpoint_monitors"][0]["name"] == "val/acc_pgd"


def _replace_one_buffer(bundle: Path) -> None:
    """Swap the weights for other valid ones: one BatchNorm/normalisation buffer changed."""
    import safetensors.torch

    path = bundle / FILES["weights"]
    state = safetensors.torch.load_file(path)
    name = "normalize.mean"
    state[name] = state[name] + 0.5
    safetensors.torch.save_file(state, path, metadata={"format": "pt"})


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


TAMPERING = {
    "flipped byte in the weights": (lambda b: _flip_a_byte(b / FILES["weights"]), FILES["weights"], "SHA-256"),
    "other valid weights": (_replace_one_buffer, FILES["weights"], ""),
    "truncated state_dict": (lambda b: _truncate(b / FILES["state_dict"]), FILES["state_dict"], "bytes, bundle.json records"),
    "missing program": (lambda b: (b / FILES["program"]).unlink(), FILES["program"], "is missing"),
}


@pytest.mark.parametrize("tampering", list(TAMPERING))
def test_load_bundle_names_the_file_that_differs_from_bundle_json(bundle: Path, tmp_path: Path, tampering: str) -> None:
    from export.integrity import BundleIntegrityError

    change, name, words = TAMPERING[tampering]
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    load_bundle(copy)  # intact: loads
    change(copy)
    with pytest.raises(BundleIntegrityError, match=rf"{re.escape(name)} .*{re.escape(words)}.*--no-verify") as error:
        load_bundle(copy)
    assert str(copy) in str(error.value)
    if tampering == "other valid weights":  # changed on purpose: loads without the check, as changed
        loaded = load_bundle(copy, verify=False)
        original = load_bundle(bundle).model.state_dict()["normalize.mean"]
        assert torch.allclose(loaded.model.state_dict()["normalize.mean"], original + 0.5)


def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def test_the_model_cards_snippet_checks_the_files_before_loading(bundle: Path, tmp_path: Path, monkeypatch) -> None:
    snippet = _python_blocks((bundle / FILES["model_card"]).read_text())[0]
    assert "hashlib.sha256" in snippet and 'meta["bytes"]' in snippet
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    monkeypatch.chdir(copy)
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)  # the whole snippet runs: check, load, saliency
    assert scope["saliency"].shape == scope["x"].shape
    _replace_one_buffer(copy)
    with pytest.raises(RuntimeError, match=rf"{FILES['weights']} differs from what bundle.json records"):
        exec(compile(snippet, "README.md", "exec"), {})


def test_a_full_disk_during_an_export_keeps_the_previous_bundle(
    trained, bundle: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    import errno

    import safetensors.torch

    out = tmp_path / "bundle"
    shutil.copytree(bundle, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    saved = safetensors.torch.save_file

    def full_disk(tensors, filename, metadata=None):
        saved(tensors, filename, metadata=metadata)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with pytest.raises(SystemExit) as exit_info:
        train.main(["export", "--ckpt_path", str(trained["best"]), "--out_dir", str(out), "--overwrite", "--wandb", "off"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert f"error: could not write export bundle {out}: No space left on device" in err and "is unchanged" in err
    assert "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no staging folder left behind
