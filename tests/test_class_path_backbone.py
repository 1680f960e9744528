"""A backbone defined outside robustlens, chosen by class path: it trains through train.py, its
checkpoint records it as plain data and resumes, it exports to a bundle that loads with plain
PyTorch (without robustlens and without the module that defined it), and it is reported on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import train
from export import load_bundle, load_classifier

REPO = Path(__file__).resolve().parents[1]
MODULE = "robustlens_test_outside_nets"  # a name no other test imports
NETWORK = textwrap.dedent(
    """
    from torch import nn


    class LeNetish(nn.Module):
        def __init__(self, num_classes: int, in_channels: int = 3, image_size=(32, 32), hidden: int = 32):
            super().__init__()
            h, w = image_size
            self.features = nn.Sequential(nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))
            self.head = nn.Sequential(
                nn.Flatten(), nn.Linear(6 * (h // 2) * (w // 2), hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
            )

        def forward(self, x):
            return self.head(self.features(x))
    """
)
OUTSIDE = textwrap.dedent(
    f"""
    import importlib.util, sys
    import torch

    for name in ("losses", "attacks", "lightning_modules", "export", "{MODULE}"):
        if importlib.util.find_spec(name) is not None:
            raise SystemExit(f"importable here: {{name}}")
    model = torch.export.load(sys.argv[1] + "/model.pt2").module()
    x = torch.load("inputs.pt", weights_only=True).requires_grad_(True)
    logits = model(x)
    (saliency,) = torch.autograd.grad(logits[:, 0].sum(), [x])
    torch.save({{"logits": logits.detach(), "saliency": saliency}}, "outputs.pt")
    """
)


@pytest.fixture(scope="module")
def outside_module(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("outside")
    (folder / f"{MODULE}.py").write_text(NETWORK)
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop(MODULE, None)


def fit_args(root: Path, *extra: str) -> list[str]:
    """The quickstart recipe with the outside network, 3 steps an epoch, logging to CSV in ``root``."""
    return [
        "fit", "--config", str(REPO / "configs" / "quickstart.yaml"),
        f"--model.backbone={MODULE}.LeNetish",
        "--model.backbone.init_args.hidden=24",
        "--model.backbone_kwargs=null",
        "--trainer.max_epochs=1", "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=1",
        "--data.init_args.train_size=96", "--data.init_args.val_size=64", "--data.init_args.test_size=32",
        "--data.init_args.batch_size=32",
        "--trainer.callbacks=[{class_path: callbacks.ModelCheckpoint, init_args: {save_last: true}}]",
        "--trainer.logger=pytorch_lightning.loggers.CSVLogger", f"--trainer.logger.init_args.save_dir={root}",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        "--trainer.num_sanity_val_steps=0",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def run(outside_module: Path, tmp_path_factory: pytest.TempPathFactory):
    """Three training steps of the quickstart recipe with the outside network, then an export."""
    root = tmp_path_factory.mktemp("run")
    cli = train.main(fit_args(root))
    last = Path(cli.trainer.checkpoint_callback.last_model_path)
    bundle = root / "bundle"
    train.main(["export", "--ckpt_path", str(last), "--out_dir", str(bundle), "--wandb", "off"])
    return {"cli": cli, "last": last, "bundle": bundle, "root": root}


def test_trains_with_the_data_values_and_records_plain_data(run) -> None:
    cli = run["cli"]
    assert cli.trainer.global_step == 3
    assert type(cli.model.model.net).__name__ == "LeNetish"
    assert cli.model.model.net.features[0].in_channels == 1  # from the data, not the default 3
    checkpoint = torch.load(run["last"], map_location="cpu", weights_only=True)  # plain data only
    assert checkpoint["hyper_parameters"]["backbone"] == {
        "class_path": f"{MODULE}.LeNetish",
        "init_args": {"in_channels": 1, "image_size": [28, 28], "hidden": 24},  # num_classes: the model's
    }
    recorded = (Path(cli.trainer.log_dir) / "config.yaml").read_text()
    assert "in_channels: 1" in recorded and "hidden: 24" in recorded  # what was built, not the defaults


def test_checkpoint_and_bundle_rebuild_the_same_model(run) -> None:
    live = run["cli"].model.model.eval()
    x = torch.rand(5, 1, 28, 28)
    for loaded in (load_classifier(run["last"]), load_bundle(run["bundle"])):
        torch.testing.assert_close(loaded.model(x), live(x))
    assert json.loads((run["bundle"] / "bundle.json").read_text())["model"]["backbone"]["class_path"] == (
        f"{MODULE}.LeNetish"
    )
    assert f"{MODULE}.LeNetish(hidden=24)" in (run["bundle"] / "README.md").read_text()


def test_bundle_loads_without_robustlens_or_the_network_module(run, tmp_path: Path) -> None:
    live = run["cli"].model.model.eval()
    x = torch.rand(6, 1, 28, 28)
    torch.save(x, tmp_path / "inputs.pt")
    (tmp_path / "outside.py").write_text(OUTSIDE)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "outside.py", str(run["bundle"])], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = torch.load(tmp_path / "outputs.pt", weights_only=True)
    x_live = x.clone().requires_grad_(True)
    logits = live(x_live)
    (saliency,) = torch.autograd.grad(logits[:, 0].sum(), [x_live])
    torch.testing.assert_close(out["logits"], logits.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["saliency"], saliency, rtol=1e-5, atol=1e-7)


def test_report_from_checkpoint_and_bundle(run) -> None:
    records = []
    for source in (["--ckpt_path", str(run["last"])], ["--bundle", str(run["bundle"])]):
        out = run["root"] / f"report-{source[0].strip('-')}"
        train.main(
            ["report", *source, "--out_dir", str(out), "--num_examples", "8", "--methods", "[saliency]",
             "--metrics", "[topk_intersection@noise]", "--eps", "[0.1]", "--no_progress"]
        )  # fmt: skip
        records.append(json.loads((out / "report.json").read_text()))
        assert f"{MODULE}.LeNetish(hidden=24)" in (out / "report.md").read_text().splitlines()[0]
    ckpt, bundle = ({m: {n: c["value"] for n, c in row.items()} for m, row in r["metrics"].items()} for r in records)
    assert ckpt == bundle and records[0]["accuracy"]["accuracy"] == records[1]["accuracy"]["accuracy"]


def test_run_resumes_from_its_checkpoint(run, tmp_path: Path) -> None:
    """LightningCLI re-parses the checkpoint's hyper-parameters: the recorded backbone must parse."""
    cli = train.main(fit_args(tmp_path, "--trainer.max_epochs=2", f"--ckpt_path={run['last']}"))
    assert cli.trainer.global_step == 6
