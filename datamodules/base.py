"""What every robustlens datamodule provides beyond Lightning's: facts about the images, and
a fixed probe set for evaluation code.

Datamodules yield ``(x, y)`` batches with x in [0, 1] (normalisation is the model's first
layer). The model is sized from the datamodule (``num_classes``, ``input_shape``, ``mean``,
``std``; ``train.py`` links them), and callbacks draw a seeded probe set with
:meth:`ImageDataModule.probe_batch`, which also carries ground-truth masks when the dataset has
them. Masks never travel through the training batches: evaluation code asks for them here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pytorch_lightning import LightningDataModule
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from datamodules.resumable import ResumableDataLoader

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class ProbeBatch:
    """A fixed set of examples for evaluation code.

    Attributes:
        x: (N, C, H, W) images in [0, 1].
        y: (N,) labels.
        indices: (N,) positions in the split they came from.
        mask: (N, 1, H, W) bool ground-truth mask of the class-defining object, or None.
        spurious_mask: (N, 1, H, W) bool mask of the spurious artifact, or None.
    """

    x: Tensor
    y: Tensor
    indices: Tensor
    mask: Tensor | None = None
    spurious_mask: Tensor | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def slice(self, start: int, stop: int) -> ProbeBatch:
        """Rows ``start:stop`` (a rank's share under DDP, a chunk of a large probe set)."""
        return ProbeBatch(
            self.x[start:stop],
            self.y[start:stop],
            self.indices[start:stop],
            None if self.mask is None else self.mask[start:stop],
            None if self.spurious_mask is None else self.spurious_mask[start:stop],
        )

    def to(self, device: torch.device | str) -> ProbeBatch:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return ProbeBatch(self.x.to(device), self.y.to(device), self.indices, move(self.mask), move(self.spurious_mask))


class ImageDataModule(LightningDataModule):
    """Base class of robustlens datamodules.

    Subclasses set ``num_classes``, ``input_shape`` (C, H, W), ``mean``, ``std`` and
    ``class_names`` in ``__init__`` (before any data is read, so the model can be built from
    them) and implement :meth:`split_dataset`.
    """

    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str]

    def split_dataset(self, split: str) -> Dataset:
        """The dataset of ``split`` ("train", "val" or "test"), set up if needed."""
        raise NotImplementedError

    def make_loader(self, dataset: Dataset, batch_size: int, train: bool, num_workers: int = 0) -> DataLoader:
        """The loader every robustlens datamodule uses.

        Training loaders shuffle with a permutation drawn from (seed, epoch) — the seed is the
        run's ``seed_everything`` value — and resume exactly mid-epoch
        (:class:`ResumableDataLoader`). No loader draws from the global RNG when iterated, so
        evaluation never shifts the training randomness.

        Under DDP, evaluation loaders (validation, test) give each process its own examples
        without padding (:meth:`evaluation_sampler`): Lightning's distributed sampler would
        repeat examples to even out the shares, and every evaluation must count each example
        exactly once.
        """
        sampler = None if train else self.evaluation_sampler(dataset)
        return ResumableDataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train,
            seed=torch.initial_seed() % 2**31,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            **({"sampler": sampler} if sampler is not None else {}),
        )

    def evaluation_sampler(self, dataset: Dataset) -> Sampler[int] | None:
        """Under DDP, the examples of an evaluation split that this process evaluates: every
        ``world_size``-th from its rank, none repeated (the shares differ by at most one
        example; torchmetrics states and ``self.log(sync_dist=True)`` reduce once per epoch,
        so uneven batch counts are fine). None in a single process, or when Lightning's
        distributed sampler is turned off (``use_distributed_sampler: false``).

        Raises:
            ValueError: the split has fewer examples than there are processes (a process with
                nothing to evaluate would leave the others waiting at the reduction).
        """
        trainer = getattr(self, "trainer", None)
        kwargs = getattr(trainer, "distributed_sampler_kwargs", None) if trainer is not None else None
        connector = getattr(trainer, "_accelerator_connector", None)
        if not kwargs or kwargs.get("num_replicas", 1) <= 1 or not getattr(connector, "use_distributed_sampler", True):
            return None
        size = len(dataset)  # type: ignore[arg-type]
        if size < kwargs["num_replicas"]:
            raise ValueError(
                f"an evaluation split must hold at least one example per process ({kwargs['num_replicas']}), got {size}"
            )
        return UnrepeatedDistributedSampler(dataset, num_replicas=kwargs["num_replicas"], rank=kwargs["rank"], shuffle=False)

    def probe_batch(self, size: int, seed: int = 0, split: str = "val") -> ProbeBatch:
        """``size`` examples of ``split`` drawn without replacement by a generator seeded with
        ``seed``: the same seed gives the same examples, whatever else has used the RNG."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        dataset = self.split_dataset(split)
        n = len(dataset)  # type: ignore[arg-type]
        if not 1 <= size <= n:
            raise ValueError(f"probe size must be in [1, {n}] (the size of the {split} split), got {size}")
        generator = torch.Generator().manual_seed(seed)
        indices = torch.randperm(n, generator=generator)[:size].sort().values
        return self._gather(dataset, indices)

    def _gather(self, dataset: Dataset, indices: Tensor) -> ProbeBatch:
        """Collect the examples at ``indices``; subclasses with masks override this."""
        xs, ys = zip(*(dataset[int(i)] for i in indices))
        return ProbeBatch(torch.stack(xs), torch.as_tensor(ys), indices)
