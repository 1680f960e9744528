"""Synthetic shapes: a procedurally generated image classification task with ground truth.

Each image shows one class-defining shape (disk, square, triangle, plus, ring, X, diamond,
hollow square, T, half-disk) at a random position, size, small rotation and colour, on a
noisy, textured background (a random low-frequency sinusoidal grating plus Gaussian pixel
noise). Every sample comes with the mask of the shape's pixels, so attributions can be scored
against the truth (pointing game, relevance mass).

An optional spurious artifact, a small checkerboard patch in the top-left corner, tests whether
a model or an explanation latches onto a shortcut. In the train and val splits the patch appears
on a fraction ``spurious_rate`` of the images of class ``spurious_class`` and on no image of any
other class, so its presence predicts that class; in the test split it appears on images of
every class alike, at the same overall rate (``spurious_rate / num_classes``), so it carries no
information about the label there.

Generation is vectorised and seeded per split (``seed`` and the split's name), done once in the
main process: the same seed gives the same data whatever the number of dataloader workers.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules.base import SPLITS, ImageDataModule, ProbeBatch

SHAPES: tuple[str, ...] = (
    "disk",
    "square",
    "triangle",
    "plus",
    "ring",
    "x",
    "diamond",
    "hollow_square",
    "t",
    "half_disk",
)
_SPLIT_OFFSET = {"train": 0, "val": 1, "test": 2}
#: The concept of the spurious checkerboard patch (the other concepts are the class shapes).
PATCH_CONCEPT = "patch"


@dataclass
class ShapesTensors:
    """A generated split: images (N, C, H, W) in [0, 1], labels (N,), object masks and
    spurious-patch masks (N, 1, H, W) bool."""

    images: Tensor
    labels: Tensor
    masks: Tensor
    spurious_masks: Tensor


def _shape_mask(kind: int, u: Tensor, v: Tensor) -> Tensor:
    """Inside-test of shape ``kind`` in local coordinates (u, v), unit radius, centred at 0."""
    rho2 = u * u + v * v
    au, av = u.abs(), v.abs()
    if kind == 0:  # disk
        return rho2 <= 1.0
    if kind == 1:  # square
        return torch.maximum(au, av) <= 0.8
    if kind == 2:  # triangle, apex up
        return (v >= -0.85) & (v <= 0.8) & (au <= (v + 0.85) * 0.6)
    if kind in (3, 5):  # plus, and X (a plus turned by 45°)
        if kind == 5:
            u, v = (u + v) / math.sqrt(2.0), (v - u) / math.sqrt(2.0)
            au, av = u.abs(), v.abs()
        return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))
    if kind == 4:  # ring
        return (rho2 <= 1.0) & (rho2 >= 0.5**2)
    if kind == 6:  # diamond
        return au + av <= 1.0
    if kind == 7:  # hollow square
        m = torch.maximum(au, av)
        return (m <= 0.85) & (m >= 0.45)
    if kind == 8:  # T
        return (((v + 0.65).abs() <= 0.25) & (au <= 0.9)) | ((au <= 0.25) & (v >= -0.65) & (v <= 0.9))
    if kind == 9:  # half disk, flat side up
        return (rho2 <= 1.0) & (v >= -0.1)
    raise ValueError(f"shape kind must be in [0, {len(SHAPES)}), got {kind}")


def paste_spurious_patch(images: Tensor) -> tuple[Tensor, Tensor]:
    """``images`` (N, C, s, s) with the spurious checkerboard patch (side max(3, s // 7), one
    pixel from the top-left corner) pasted, and the patch's masks (N, 1, s, s) bool."""
    s = images.shape[-1]
    p = max(3, s // 7)
    checker = ((torch.arange(p)[:, None] + torch.arange(p)[None, :]) % 2).to(images.dtype)  # (p, p)
    pasted = images.clone()
    pasted[:, :, 1 : 1 + p, 1 : 1 + p] = checker
    masks = torch.zeros(images.shape[0], 1, s, s, dtype=torch.bool)
    masks[:, :, 1 : 1 + p, 1 : 1 + p] = True
    return pasted, masks


def generate_shapes(
    n: int,
    num_classes: int,
    image_size: int,
    channels: int,
    seed: int,
    noise: float = 0.08,
    spurious_rate: float = 0.0,
    spurious_class: int = 0,
    spurious_informative: bool = True,
) -> ShapesTensors:
    """Generate ``n`` labelled images with their masks; see the module docstring.

    Args:
        n: number of images.
        num_classes: classes, the first ``num_classes`` of :data:`SHAPES`; labels are balanced.
        image_size: height and width.
        channels: 1 (grey) or 3 (colour).
        seed: seed of the private generator: the same arguments give the same tensors.
        noise: standard deviation of the Gaussian pixel noise.
        spurious_rate: share of ``spurious_class`` images carrying the patch.
        spurious_class: the class the patch predicts where it is informative.
        spurious_informative: True for train/val (patch only on ``spurious_class``), False for
            test (patch on every class at the same overall rate).
    """
    g = torch.Generator().manual_seed(seed)
    s = image_size
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=g)]

    def uniform(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=g)

    # Geometry: radius, centre (shape fully inside), rotation of up to ±15°.
    radius = uniform(0.22, 0.36, n) * s  # (N,)
    cx = radius + torch.rand(n, generator=g) * (s - 2 * radius)
    cy = radius + torch.rand(n, generator=g) * (s - 2 * radius)
    theta = uniform(-math.pi / 12, math.pi / 12, n)
    coords = torch.arange(s, dtype=torch.float32) + 0.5
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # (H, W)
    dx = (xx[None] - cx[:, None, None]) / radius[:, None, None]  # (N, H, W)
    dy = (yy[None] - cy[:, None, None]) / radius[:, None, None]
    cos, sin = theta.cos()[:, None, None], theta.sin()[:, None, None]
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    masks = torch.zeros(n, s, s, dtype=torch.bool)
    for kind in range(num_classes):
        rows = labels == kind
        if rows.any():
            masks[rows] = _shape_mask(kind, u[rows], v[rows])

    # Appearance: background colour with a sinusoidal grating, object colour at a contrast of
    # 0.35-0.6 in a random direction, Gaussian noise over everything.
    background = uniform(0.2, 0.8, n, channels)  # (N, C)
    contrast = uniform(0.5, 0.8, n, channels)
    sign = torch.where(background + contrast <= 0.95, 1.0, -1.0)
    flip = torch.rand(n, channels, generator=g) < 0.5
    sign = torch.where(flip & (background - contrast >= 0.05), -1.0, sign)
    foreground = (background + sign * contrast).clamp(0.0, 1.0)
    freq = uniform(1.0, 3.0, n, 2)
    phase = uniform(0.0, 2 * math.pi, n)
    amplitude = uniform(0.04, 0.12, n)
    grating = amplitude[:, None, None] * torch.sin(
        2 * math.pi * (freq[:, 0, None, None] * xx[None] + freq[:, 1, None, None] * yy[None]) / s
        + phase[:, None, None]
    )  # (N, H, W)
    m = masks[:, None].float()  # (N, 1, H, W)
    images = background[:, :, None, None] * (1 - m) + foreground[:, :, None, None] * m
    images = images + grating[:, None] + noise * torch.randn(n, channels, s, s, generator=g)

    # Spurious checkerboard patch in the top-left corner.
    spurious_masks = torch.zeros(n, 1, s, s, dtype=torch.bool)
    if spurious_rate > 0:
        draw = torch.rand(n, generator=g)
        if spurious_informative:
            has_patch = (labels == spurious_class) & (draw < spurious_rate)
        else:
            has_patch = draw < spurious_rate / num_classes
        rows = has_patch.nonzero().flatten()
        images[rows], spurious_masks[rows] = paste_spurious_patch(images[rows])
        masks &= ~spurious_masks[:, 0]

    return ShapesTensors(images.clamp_(0.0, 1.0), labels, masks[:, None], spurious_masks)


class TensorImageDataset(Dataset):
    """Images and labels held in memory; items are ``(x, y)``. Masks stay here for evaluation
    code (:meth:`ImageDataModule.probe_batch`) and never enter the training batches."""

    def __init__(self, data: ShapesTensors) -> None:
        self.data = data

    def __len__(self) -> int:
        return int(self.data.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.data.images[index], self.data.labels[index]


class SyntheticShapes(ImageDataModule):
    """Datamodule of :func:`generate_shapes`; needs no download.

    Args:
        image_size: height and width in pixels (>= 16).
        channels: 1 (grey) or 3 (colour).
        num_classes: 2 to 10 shape classes.
        train_size: images in the training split.
        val_size: images in the validation split.
        test_size: images in the test split.
        seed: data seed (independent of the training seed).
        noise: standard deviation of the Gaussian pixel noise.
        spurious_rate: in [0, 1]; share of ``spurious_class`` training/validation images that
            carry the corner patch (0 turns the patch off).
        spurious_class: the class the patch predicts in train/val.
        batch_size: training batch size.
        eval_batch_size: validation/test batch size.
        num_workers: dataloader workers.
    """

    def __init__(
        self,
        image_size: int = 28,
        channels: int = 1,
        num_classes: int = 10,
        train_size: int = 5000,
        val_size: int = 1000,
        test_size: int = 1000,
        seed: int = 0,
        noise: float = 0.08,
        spurious_rate: float = 0.0,
        spurious_class: int = 0,
        batch_size: int = 128,
        eval_batch_size: int = 256,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {image_size}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if not 2 <= num_classes <= len(SHAPES):
            raise ValueError(f"num_classes must be in [2, {len(SHAPES)}], got {num_classes}")
        for name, size in (("train_size", train_size), ("val_size", val_size), ("test_size", test_size)):
            if size < 1:
                raise ValueError(f"{name} must be >= 1, got {size}")
        if not noise >= 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        if not 0.0 <= spurious_rate <= 1.0:
            raise ValueError(f"spurious_rate must be in [0, 1], got {spurious_rate}")
        if not 0 <= spurious_class < num_classes:
            raise ValueError(f"spurious_class must be in [0, {num_classes - 1}], got {spurious_class}")
        for name, size in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if size < 1:
                raise ValueError(f"{name} must be >= 1, got {size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.save_hyperparameters(logger=False)
        self.image_size = image_size
        self.channels = channels
        self.num_classes = num_classes
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.seed = seed
        self.noise = noise
        self.spurious_rate = spurious_rate
        self.spurious_class = spurious_class
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.input_shape = (channels, image_size, image_size)
        self.mean = (0.5,) * channels
        self.std = (0.25,) * channels
        self.class_names = list(SHAPES[:num_classes])
        self._datasets: dict[str, TensorImageDataset] = {}

    def split_dataset(self, split: str) -> TensorImageDataset:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if split not in self._datasets:
            data = generate_shapes(
                self.sizes[split],
                self.num_classes,
                self.image_size,
                self.channels,
                seed=self.seed * 3 + _SPLIT_OFFSET[split],
                noise=self.noise,
                spurious_rate=self.spurious_rate,
                spurious_class=self.spurious_class,
                spurious_informative=split != "test",
            )
            self._datasets[split] = TensorImageDataset(data)
        return self._datasets[split]

    def setup(self, stage: str) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in splits.get(stage, SPLITS):
            self.split_dataset(split)

    def _loader(self, split: str) -> DataLoader:
        train = split == "train"
        batch_size = self.batch_size if train else self.eval_batch_size
        return self.make_loader(self.split_dataset(split), batch_size, train=train, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    # -- concept example sets (TCAV) ---------------------------------------------------------

    def concept_names(self) -> list[str]:
        """Concepts :meth:`concept_examples` can draw: the spurious patch and each class's shape."""
        return [PATCH_CONCEPT, *self.class_names]

    def _check_concept(self, concept: str) -> None:
        if concept not in self.concept_names():
            raise ValueError(f"concept must be one of {self.concept_names()}, got {concept!r}")

    def _draw(self, n: int, role: str, seed: int) -> ShapesTensors:
        """``n`` fresh images without the patch from the datamodule's generator, seeded by the
        data seed, ``role`` and ``seed`` (crc32: the same in every process), apart from the splits."""
        derived = zlib.crc32(f"concepts/{self.seed}/{role}/{seed}".encode())
        return generate_shapes(n, self.num_classes, self.image_size, self.channels, seed=derived, noise=self.noise)

    def _of_class(self, target: int, n: int, role: str, seed: int, exclude: bool = False) -> Tensor:
        data = self._draw(n * self.num_classes, role, seed)  # labels are balanced: n of each class
        rows = (data.labels != target) if exclude else (data.labels == target)
        return data.images[rows][:n]

    def concept_examples(self, concept: str, n: int, seed: int = 0) -> Tensor:
        """(n, C, H, W) examples of ``concept``: for "patch", images of every class with the
        spurious patch pasted; for a shape, images of the class that shape defines (no patch).

        Raises:
            ValueError: an unknown concept (the allowed names are listed) or n < 1.
        """
        self._check_concept(concept)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if concept == PATCH_CONCEPT:
            return paste_spurious_patch(self._draw(n, "patch", seed).images)[0]
        return self._of_class(self.class_names.index(concept), n, f"shape/{concept}", seed)

    def random_examples(self, concept: str, n: int, seed: int = 0) -> Tensor:
        """(n, C, H, W) random images without ``concept`` (TCAV's counter-examples): for "patch",
        images of every class without the patch; for a shape, images of the other classes.
        Different ``seed`` values give different sets."""
        self._check_concept(concept)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if concept == PATCH_CONCEPT:
            return self._draw(n, "random", seed).images
        return self._of_class(self.class_names.index(concept), n, f"random/{concept}", seed, exclude=True)

    def class_examples(self, target: int, n: int, seed: int = 0) -> Tensor:
        """(n, C, H, W) images of class ``target`` without the patch (the inputs whose
        directional derivatives TCAV counts)."""
        if not 0 <= target < self.num_classes:
            raise ValueError(f"target must be a class index in [0, {self.num_classes - 1}], got {target}")
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        return self._of_class(target, n, "class", seed)

    def _gather(self, dataset: Dataset, indices: Tensor) -> ProbeBatch:
        data = dataset.data  # type: ignore[attr-defined]
        has_patch = self.spurious_rate > 0
        return ProbeBatch(
            data.images[indices],
            data.labels[indices],
            indices,
            mask=data.masks[indices],
            spurious_mask=data.spurious_masks[indices] if has_patch else None,
        )
