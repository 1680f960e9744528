"""Datamodules: images in [0, 1], batches ``(x, y)``, and seeded probe sets for evaluation."""

from datamodules.arrays import ArrayFile
from datamodules.base import SPLITS, ImageDataModule, ProbeBatch
from datamodules.cifar import CIFAR10, CIFAR100
from datamodules.image_folder import ImageFolder
from datamodules.image_split import ImageSplit, RandomCropFlip
from datamodules.mnist import MNIST, FashionMNIST
from common.mosaics import Mosaics, build_mosaics, mosaics_around
from datamodules.published import PublishedDataModule
from datamodules.resumable import EpochSeededSampler, ResumableDataLoader
from datamodules.split_base import SplitImageDataModule
from datamodules.svhn import SVHN
from datamodules.synthetic import SHAPES, ShapesTensors, SyntheticShapes, generate_shapes

__all__ = [
    "ArrayFile",
    "CIFAR10",
    "CIFAR100",
    "MNIST",
    "SHAPES",
    "SPLITS",
    "SVHN",
    "EpochSeededSampler",
    "FashionMNIST",
    "ImageDataModule",
    "ImageFolder",
    "ImageSplit",
    "Mosaics",
    "ProbeBatch",
    "PublishedDataModule",
    "RandomCropFlip",
    "ResumableDataLoader",
    "ShapesTensors",
    "SplitImageDataModule",
    "SyntheticShapes",
    "build_mosaics",
    "generate_shapes",
    "mosaics_around",
]
