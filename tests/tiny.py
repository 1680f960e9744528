"""Tiny models and batches shared by the objective tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn

from datamodules import generate_shapes
from lightning_modules import build_model


def tiny_cnn(
    num_classes: int = 3, size: int = 16, channels: int = 1, seed: int = 0, activation: str = "relu"
) -> nn.Module:
    """small_cnn of width 4 (Normalize first), for batches of ``channels``×``size``×``size``."""
    torch.manual_seed(seed)
    return build_model(
        "small_cnn",
        num_classes,
        (channels, size, size),
        (0.5,) * channels,
        (0.25,) * channels,
        activation=activation,  # type: ignore[arg-type]
        backbone_kwargs={"width": 4, "hidden": 16},
    )


def smooth_mlp(in_features: int = 12, num_classes: int = 3, seed: int = 0) -> nn.Module:
    """Float64 MLP with softplus on (B, 1, 2, in_features/2) images: smooth, for finite differences."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_features, 8), nn.Softplus(beta=2.0), nn.Linear(8, num_classes)
    ).double()


def shapes_batch(
    n: int = 16, num_classes: int = 3, size: int = 16, channels: int = 1, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """A batch of synthetic shapes, x in [0, 1] (n, C, size, size) and labels (n,)."""
    data = generate_shapes(n, num_classes, size, channels, seed=seed)
    return data.images, data.labels


@pytest.fixture(scope="module")
def single_thread() -> Iterator[None]:
    """One intra-op thread for the module: tiny models train faster so, much faster on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class MixedModes(nn.Module):
    """Conv, BatchNorm, a frozen (eval-mode) BatchNorm and dropout, for 1×size×size inputs:
    the modes a careless attack would change (the caller sets ``.train()`` and freezes
    ``frozen_bn``)."""

    def __init__(self, size: int = 8, num_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.frozen_bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4 * size * size, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.drop(self.frozen_bn(self.bn(self.conv(x))).relu().flatten(1)))
