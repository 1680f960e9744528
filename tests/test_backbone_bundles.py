"""WideResNets and timm backbones: the published sizes, a training step, an export bundle that
reloads in plain PyTorch, a non-zero Grad-CAM map, the ViT token grid, and the missing-extra
message."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import train
from attacks import PGD
from attributions import GradCAM
from datamodules import SyntheticShapes
from export import export_bundle
from lightning_modules import RobustClassifier, TimmBackbone, build_backbone
from losses import PGDAdversarialTraining
from tests.conftest import tiny_trainer_kwargs

REPO = Path(__file__).resolve().parents[1]
TINY_VIT = {"patch_size": 4, "depth": 1, "embed_dim": 16, "num_heads": 2}
BACKBONES = {
    # name: (backbone_kwargs, image size, the layer Grad-CAM picks by default)
    "wrn28_10": ({"depth": 10, "widen_factor": 1}, 16, "net.relu"),
    "wrn34_10": ({"depth": 10, "widen_factor": 1}, 16, "net.relu"),
    "timm/vit_tiny_patch16_224": (TINY_VIT, 16, "net.model.blocks.0.norm1"),
    "timm/deit_tiny_distilled_patch16_224": (TINY_VIT, 16, "net.model.blocks.0.norm1"),
    "timm/convnext_atto": ({"depths": (1, 1, 1, 1), "dims": (8, 8, 16, 16)}, 32, "net.model.stages.3"),
}
# Shrunk, the two WideResNets are the same network, and DeiT is a ViT with one more prefix token
# (its grid is tested below): those two run with -m slow.
SLOW = {"wrn34_10", "timm/deit_tiny_distilled_patch16_224"}


def test_wide_resnets_have_the_published_sizes() -> None:
    """WRN-28-10 and WRN-34-10 for CIFAR-10: 36.5 M and 46.2 M parameters (RobustBench's models)."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        sizes = {n: sum(p.numel() for p in build_backbone(n, 10, (3, 32, 32)).parameters()) for n in ("wrn28_10", "wrn34_10")}
    assert sizes == {"wrn28_10": 36_479_194, "wrn34_10": 46_160_474}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in BACKBONES])
def test_backbone_trains_exports_and_explains(name: str, tmp_path: Path) -> None:
    if name.startswith("timm/"):
        pytest.importorskip("timm")
    kwargs, size, cam_layer = BACKBONES[name]
    pl.seed_everything(0)
    dm = SyntheticShapes(image_size=size, channels=3, num_classes=3, train_size=8, val_size=8, test_size=8, batch_size=8)
    model = RobustClassifier(
        backbone=name,
        num_classes=3,
        input_shape=dm.input_shape,
        mean=dm.mean,
        std=dm.std,
        backbone_kwargs=kwargs,
        objective=PGDAdversarialTraining(PGD(eps=0.1, step_size=0.1, steps=1)),
        eval_attack=None,
    )
    before = [p.detach().clone() for p in model.parameters()]
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = pl.Trainer(
        **tiny_trainer_kwargs() | {"enable_checkpointing": True}, max_steps=1, limit_val_batches=0, callbacks=[checkpoint]
    )
    trainer.fit(model, dm)
    assert sum(not torch.equal(b, p) for b, p in zip(before, model.parameters())) > 0

    bundle = export_bundle(tmp_path / "ckpt" / "last.ckpt", tmp_path / "bundle")
    x = torch.rand(5, *dm.input_shape)
    classifier = model.model.eval()
    blocked = {"timm": None, "lightning_modules": None, "losses": None}  # the program needs neither
    with pytest.MonkeyPatch.context() as patch:
        for module, value in blocked.items():
            patch.setitem(sys.modules, module, value)
        program = torch.export.load(bundle.directory / "model.pt2").module()
    torch.testing.assert_close(program(x), classifier(x), rtol=1e-4, atol=1e-5)

    cam = GradCAM()
    assert next(n for n, m in classifier.named_modules() if m is cam.find_layer(classifier)) == cam_layer
    maps = cam(classifier, x, None)
    assert maps.shape == x.shape and maps.abs().sum() > 0


def test_vit_reshape_drops_the_prefix_tokens_and_restores_the_patch_grid() -> None:
    pytest.importorskip("timm")
    net = TimmBackbone("timm/deit_tiny_distilled_patch16_224", 3, 4, (16, 12), **TINY_VIT)
    assert net.model.num_prefix_tokens == 2  # class and distillation tokens
    x = torch.rand(2, 3, 16, 12)
    grid = net.model.patch_embed.proj(x)  # (2, D, 4, 3), the patches before timm flattens them
    tokens = torch.cat([torch.randn(2, 2, grid.shape[1]), grid.flatten(2).transpose(1, 2)], dim=1)
    assert torch.equal(net.gradcam_reshape(tokens), grid)


def test_missing_timm_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # as if not installed, whether it is or not
    with pytest.raises(ValueError, match=r'timm.*pip install -e "\.\[timm\]"'):
        build_backbone("timm/convnext_atto", 3, (3, 32, 32))
    monkeypatch.setattr(sys, "argv", ["train.py"])
    with pytest.raises(SystemExit) as exit_info:
        train.main(
            [
                "fit",
                "--config",
                str(REPO / "configs" / "quickstart.yaml"),
                "--model.backbone=timm/convnext_atto",
                f"--trainer.default_root_dir={tmp_path}",
                f"--trainer.logger.init_args.save_dir={tmp_path}",
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid configuration: model.backbone: backbone 'timm/convnext_atto' needs the optional dependency timm" in err
    assert 'pip install -e ".[timm]"' in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_unknown_timm_model_is_named() -> None:
    pytest.importorskip("timm")
    with pytest.raises(ValueError, match="timm has no model 'vit_nope'"):
        build_backbone("timm/vit_nope", 3, (3, 32, 32))
