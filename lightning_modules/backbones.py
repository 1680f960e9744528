"""Backbone architectures and the normalisation layer that makes them take [0, 1] inputs.

Every backbone is built by :func:`build_backbone` from a name, so recipes, checkpoints and
export bundles refer to architectures by a short, validated string:

- ``small_cnn``: four 3×3 convolutions and two max-pools, then a hidden linear layer; for
  28×28 and 32×32 inputs (the quickstart model).
- ``preact_resnet18``: PreAct ResNet-18 (He et al., ECCV 2016), the standard model of
  adversarial training on CIFAR-10 (Rice, Wong & Kolter, ICML 2020).
- ``wrn28_10``, ``wrn34_10``: WideResNet-28-10 and -34-10 (:mod:`lightning_modules.wide_resnet`).
- ``torchvision/<name>``: any torchvision classification model, untrained, with
  ``num_classes`` outputs; single-channel inputs are repeated to three channels.
- ``timm/<name>``: any timm model, with the optional dependency
  (:mod:`lightning_modules.timm_backbones`).

Activations are ``nn.ReLU`` modules (never ``F.relu``), so that softplus(β) can replace them
(:mod:`attributions.activations`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from attributions.activations import relu_to_softplus
from lightning_modules.timm_backbones import TIMM_PREFIX, TimmBackbone, check_timm_name
from lightning_modules.wide_resnet import WIDE_RESNETS, build_wide_resnet

Activation = Literal["relu", "softplus"]
BUILTIN_BACKBONES: tuple[str, ...] = ("small_cnn", "preact_resnet18", *WIDE_RESNETS)
TORCHVISION_PREFIX = "torchvision/"


class Normalize(nn.Module):
    """``(x − mean) / std`` per channel: the first layer of every robustlens model.

    Keeping normalisation inside the model keeps attacks, attributions and metrics in [0, 1]
    pixel space, and makes an exported model take raw images.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std must have the same length, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be > 0 in every channel, got {list(std)}")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class SmallCNN(nn.Module):
    """conv-conv-pool-conv-conv-pool-linear-linear, all 3×3 convolutions with padding 1.

    Args:
        in_channels: image channels.
        num_classes: outputs.
        image_size: (H, W) of the input, to size the first linear layer.
        width: channels of the first two convolutions (the last two have 2×).
        hidden: units of the hidden linear layer.
        batch_norm: BatchNorm after every convolution.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        width: int = 32,
        hidden: int = 256,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()

        def conv(cin: int, cout: int) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU())
            return layers

        self.features = nn.Sequential(
            *conv(in_channels, width),
            *conv(width, width),
            nn.MaxPool2d(2),
            *conv(width, 2 * width),
            *conv(2 * width, 2 * width),
            nn.MaxPool2d(2),
        )
        h, w = image_size[0] // 4, image_size[1] // 4
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * h * w, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class PreActBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv-BN-ReLU-conv plus a shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.relu2(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """PreAct ResNet-18 (He, Zhang, Ren & Sun, "Identity Mappings in Deep Residual Networks")."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        layers: list[nn.Module] = []
        in_planes = width
        for i, stride in enumerate((1, 2, 2, 2)):
            planes = width * 2**i
            layers.append(nn.Sequential(PreActBlock(in_planes, planes, stride), PreActBlock(planes, planes, 1)))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.bn = nn.BatchNorm2d(in_planes)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = self.pool(self.relu(self.bn(out)))
        return self.linear(out.flatten(1))


class ChannelRepeat(nn.Module):
    """Repeat a single-channel image to ``channels`` channels (grey images into RGB models)."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor:
        return x.expand(-1, self.channels, -1, -1)


def available_backbones() -> list[str]:
    """Names :func:`build_backbone` accepts (torchvision models as ``torchvision/<name>``)."""
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    return list(BUILTIN_BACKBONES) + [TORCHVISION_PREFIX + n for n in names]


def check_backbone_name(name: str) -> None:
    """Raise a ValueError naming the allowed values when ``name`` is no known backbone."""
    if name in BUILTIN_BACKBONES:
        return
    if name.startswith(TIMM_PREFIX):
        return check_timm_name(name)
    if name.startswith(TORCHVISION_PREFIX):
        import torchvision

        tv_name = name[len(TORCHVISION_PREFIX) :]
        names = torchvision.models.list_models(module=torchvision.models)
        if tv_name in names:
            return
        raise ValueError(
            f"backbone {name!r}: torchvision has no classification model {tv_name!r}; "
            f"choose one of {', '.join(names[:8])}, ... (torchvision.models.list_models())"
        )
    raise ValueError(
        f"backbone must be one of {', '.join(BUILTIN_BACKBONES)}, 'torchvision/<model name>' or "
        f"'timm/<model name>', got {name!r}"
    )


def build_backbone(
    name: str,
    num_classes: int,
    input_shape: Sequence[int],
    activation: Activation = "relu",
    softplus_beta: float = 10.0,
    **kwargs: object,
) -> nn.Module:
    """Build the backbone called ``name`` for inputs of shape (C, H, W).

    Args:
        name: "small_cnn", "preact_resnet18", "wrn28_10", "wrn34_10", "torchvision/<model name>"
            or "timm/<model name>".
        num_classes: number of outputs.
        input_shape: (C, H, W) of one input.
        activation: "relu", or "softplus" to replace every ReLU by softplus(``softplus_beta``).
        softplus_beta: β of the softplus activation.
        **kwargs: passed to the architecture (``width``, ``hidden``, ``batch_norm`` ...).
    """
    check_backbone_name(name)
    if activation not in ("relu", "softplus"):
        raise ValueError(f"activation must be one of ('relu', 'softplus'), got {activation!r}")
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {tuple(input_shape)}")
    c, h, w = (int(v) for v in input_shape)
    if name == "small_cnn":
        net: nn.Module = SmallCNN(c, num_classes, (h, w), **kwargs)  # type: ignore[arg-type]
    elif name == "preact_resnet18":
        net = PreActResNet18(c, num_classes, **kwargs)  # type: ignore[arg-type]
    elif name in WIDE_RESNETS:
        net = build_wide_resnet(name, c, num_classes, **kwargs)
    elif name.startswith(TIMM_PREFIX):
        net = TimmBackbone(name, c, num_classes, (h, w), **kwargs)
    else:
        import torchvision

        net = torchvision.models.get_model(name[len(TORCHVISION_PREFIX) :], weights=None, num_classes=num_classes, **kwargs)
        if c == 1:
            net = nn.Sequential(ChannelRepeat(3), net)
        elif c != 3:
            raise ValueError(f"backbone {name!r} takes 1 or 3 input channels, got input_shape {tuple(input_shape)}")
    if activation == "softplus":
        relu_to_softplus(net, softplus_beta)
    return net
