"""Wide residual networks, the CIFAR models of the adversarial-robustness literature.

Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016. WRN-d-k has (d − 4)/6
pre-activation basic blocks in each of three groups of 16k, 32k and 64k channels (strides 1, 2,
2) after a 16-channel 3×3 convolution, then BatchNorm, ReLU, global average pooling and a linear
layer. WRN-34-10 (46 M parameters) is the model of Madry et al. (2018), TRADES, MART and AWP on
CIFAR-10; WRN-28-10 (36 M) that of the semi-supervised and generated-data leaderboard entries.

Follows the TRADES/MART authors' ``wideresnet.py`` (github.com/yaodongyu/TRADES,
github.com/YisenWang/MART): the same blocks (a block whose input and output widths differ
applies BN-ReLU to its input before both its convolution and its 1×1 shortcut), no biases in
convolutions, He-normal initialisation of the convolutions (std √(2 / (k·k·out channels))),
BatchNorm weights 1 and biases 0, linear bias 0. Departures: their unused ``sub_block1`` (built
but never called; it only adds parameters that DDP would flag as unused) is left out; the
pooling is adaptive (the same as their 8×8 average pooling on 32×32 inputs, and it accepts other
sizes); ReLUs are separate, not in-place modules, so softplus can replace them and hooks see
their outputs.

Grad-CAM uses ``relu``, the rectified output of the last block group after the final BatchNorm
(B, 64k, H/4, W/4): the last feature map before pooling.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

class WideBasicBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv3×3-BN-ReLU-(dropout)-conv3×3 plus the shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if in_planes != planes or stride != 1:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        activated = self.relu1(self.bn1(x))
        # As the authors: an identity block adds its raw input, a widening block adds the 1×1
        # convolution of its activated input.
        shortcut = x if self.shortcut is None else self.shortcut(activated)
        out = self.conv1(activated)
        out = self.conv2(self.dropout(self.relu2(self.bn2(out))))
        return out + shortcut


class WideResNet(nn.Module):
    """WRN-depth-widen_factor for small images (CIFAR, SVHN, ...).

    Args:
        in_channels: image channels.
        num_classes: outputs.
        depth: d, with (d − 4) divisible by 6 (28, 34, 70; 10 for a tiny test model).
        widen_factor: k, the width multiplier (10 in WRN-34-10).
        dropout: dropout rate between the two convolutions of each block (0, as the papers).
    """

    gradcam_layer = "relu"

    def __init__(
        self, in_channels: int, num_classes: int, depth: int = 34, widen_factor: int = 10, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if int(depth) != depth or depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth must be an integer >= 10 with (depth - 4) divisible by 6 (28, 34, ...), got {depth}")
        if int(widen_factor) != widen_factor or widen_factor < 1:
            raise ValueError(f"widen_factor must be an integer >= 1, got {widen_factor}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        blocks_per_group = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        groups: list[nn.Module] = []
        in_planes = 16
        for width, stride in zip(widths, (1, 2, 2)):
            blocks = [WideBasicBlock(in_planes if i == 0 else width, width, stride if i == 0 else 1, dropout)
                      for i in range(blocks_per_group)]
            groups.append(nn.Sequential(*blocks))
            in_planes = width
        self.block1, self.block2, self.block3 = groups
        self.bn = nn.BatchNorm2d(in_planes)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.pool(self.relu(self.bn(out)))
        return self.fc(out.flatten(1))


class WideResNet28x10(WideResNet):
    """WRN-28-10 (Zagoruyko & Komodakis 2016), the built-in ``wrn28_10``; ``depth`` and
    ``widen_factor`` can still be overridden (``{depth: 10, widen_factor: 1}`` for a tiny test model)."""

    def __init__(
        self, in_channels: int, num_classes: int, depth: int = 28, widen_factor: int = 10, dropout: float = 0.0
    ) -> None:
        super().__init__(in_channels, num_classes, depth, widen_factor, dropout)


class WideResNet34x10(WideResNet):
    """WRN-34-10 (Madry et al. 2018, Zhang et al. 2019, Wang et al. 2020), the built-in ``wrn34_10``."""

    def __init__(
        self, in_channels: int, num_classes: int, depth: int = 34, widen_factor: int = 10, dropout: float = 0.0
    ) -> None:
        super().__init__(in_channels, num_classes, depth, widen_factor, dropout)
