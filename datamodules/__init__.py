"""Datamodules: images in [0, 1], batches ``(x, y)``, and seeded probe sets for evaluation."""

from datamodules.base import SPLITS, ImageDataModule, ProbeBatch
from datamodules.resumable import EpochSeededSampler, ResumableDataLoader
from datamodules.synthetic import SHAPES, ShapesTensors, SyntheticShapes, generate_shapes

__all__ = [
    "SHAPES",
    "SPLITS",
    "EpochSeededSampler",
    "ImageDataModule",
    "ProbeBatch",
    "ResumableDataLoader",
    "ShapesTensors",
    "SyntheticShapes",
    "generate_shapes",
]
