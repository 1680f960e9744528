"""A small CNN trained for a second or two on synthetic shapes, for tests that need a real model.

Explanations of an untrained network are noise; orderings such as "the top-k attack moves the
explanation more than noise" or "randomising the weights changes the gradient" only mean
something on a model that has learnt the task. Training is seeded and leaves the global RNG
streams as they were.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datamodules import generate_shapes
from lightning_modules import build_model


@dataclass
class TrainedShapes:
    """A trained model and held-out examples with their ground truth."""

    model: nn.Module
    x: Tensor
    y: Tensor
    masks: Tensor
    spurious_masks: Tensor
    accuracy: float


def train_shapes_model(
    image_size: int = 16,
    num_classes: int = 3,
    train_size: int = 768,
    test_size: int = 64,
    steps: int = 120,
    seed: int = 0,
) -> TrainedShapes:
    """Train ``small_cnn`` (width 8, hidden 32) with Adam on synthetic shapes; return it in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        train = generate_shapes(train_size, num_classes, image_size, 1, seed=seed)
        test = generate_shapes(test_size, num_classes, image_size, 1, seed=seed + 1, spurious_rate=0.5)
        model = build_model(
            "small_cnn", num_classes, (1, image_size, image_size), (0.5,), (0.25,),
            backbone_kwargs={"width": 8, "hidden": 32},
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        model.train()
        for step in range(steps):
            index = torch.randint(0, train_size, (64,))
            loss = F.cross_entropy(model(train.images[index]), train.labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        for p in model.parameters():
            p.grad = None
        with torch.no_grad():
            accuracy = (model(test.images).argmax(1) == test.labels).float().mean().item()
    return TrainedShapes(model, test.images, test.labels, test.masks, test.spurious_masks, accuracy)
