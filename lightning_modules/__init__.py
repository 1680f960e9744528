"""The LightningModule and the backbone architectures it wraps."""

from lightning_modules.backbones import (
    BUILTIN_BACKBONES,
    LINKED_ARGUMENTS,
    BackboneSpec,
    Normalize,
    PreActResNet18,
    SmallCNN,
    available_backbones,
    backbone_label,
    backbone_spec,
    build_backbone,
    check_backbone_name,
    import_backbone_class,
)
from lightning_modules.reference_nets import Ismail2021MNIST, Madry2018MNIST, Wong2020MNIST, Zhang2019MNIST
from lightning_modules.robust_classifier import DivergenceError, RobustClassifier, build_model
from lightning_modules.timm_backbones import TimmBackbone
from lightning_modules.wide_resnet import WideResNet

__all__ = [
    "BUILTIN_BACKBONES",
    "LINKED_ARGUMENTS",
    "BackboneSpec",
    "DivergenceError",
    "Ismail2021MNIST",
    "Madry2018MNIST",
    "Normalize",
    "PreActResNet18",
    "RobustClassifier",
    "SmallCNN",
    "TimmBackbone",
    "WideResNet",
    "Wong2020MNIST",
    "Zhang2019MNIST",
    "available_backbones",
    "backbone_label",
    "backbone_spec",
    "build_backbone",
    "build_model",
    "check_backbone_name",
    "import_backbone_class",
]
