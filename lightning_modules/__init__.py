"""The LightningModule and the backbone architectures it wraps."""

from lightning_modules.backbones import (
    BUILTIN_BACKBONES,
    Normalize,
    PreActResNet18,
    SmallCNN,
    available_backbones,
    build_backbone,
    check_backbone_name,
)
from lightning_modules.robust_classifier import DivergenceError, RobustClassifier, build_model
from lightning_modules.timm_backbones import TimmBackbone
from lightning_modules.wide_resnet import WideResNet

__all__ = [
    "BUILTIN_BACKBONES",
    "DivergenceError",
    "Normalize",
    "PreActResNet18",
    "RobustClassifier",
    "SmallCNN",
    "TimmBackbone",
    "WideResNet",
    "available_backbones",
    "build_backbone",
    "build_model",
    "check_backbone_name",
]
