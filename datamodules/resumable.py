"""Data loading that resumes exactly in the middle of an epoch.

Exact resume after a pre-emption needs three things from the data side:

1. the order of an epoch is a function of (seed, epoch) alone — :class:`EpochSeededSampler`;
2. the loader remembers how many batches of the epoch it has served, and after a restart
   skips them without loading them — :class:`ResumableDataLoader` implements the
   ``state_dict``/``load_state_dict`` pair that Lightning saves with its loop state;
3. creating an iterator does not draw from the global RNG (PyTorch draws the workers' base
   seed from it unless the loader has its own ``generator``), so training randomness — attack
   starts, dropout — is the same whether or not the run was interrupted. The loader's own
   generator is re-seeded from (seed, epoch) at every epoch, so worker seeds do not depend on
   how many epochs this process has run either.

Random augmentation is the one gap: it draws per item, so after a mid-epoch resume the rest of
that epoch sees different crops and flips than the uninterrupted run would have (later epochs
and everything without augmentation resume exactly).
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochSeededSampler(Sampler[int]):
    """A random permutation per epoch, drawn from ``seed`` and the epoch number only.

    Lightning calls :meth:`set_epoch` at the start of every epoch. ``start`` skips the first
    indices of the current epoch (used once after a restart).
    """

    def __init__(self, data_source: Sized, seed: int = 0, shuffle: bool = True) -> None:
        self.data_source = data_source
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.data_source)

    def __iter__(self) -> Iterator[int]:
        # A generator: the order is drawn at the first next(), after Lightning's set_epoch().
        n = len(self.data_source)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=generator).tolist()
        else:
            order = list(range(n))
        start, self.start = self.start, 0
        yield from order[start:]


class ResumableDataLoader(DataLoader):
    """A DataLoader whose position inside an epoch is saved in Lightning checkpoints.

    Args:
        dataset: map-style dataset.
        batch_size: batch size.
        shuffle: a new seeded permutation every epoch (else dataset order).
        seed: seed of the permutations and of the workers' base seeds.
        **kwargs: passed to ``DataLoader`` (``num_workers``, ``drop_last``, ...).
    """

    def __init__(self, dataset: Dataset, batch_size: int = 1, shuffle: bool = False, seed: int = 0, **kwargs: Any) -> None:
        sampler = kwargs.pop("sampler", None) or EpochSeededSampler(dataset, seed=seed, shuffle=shuffle)  # type: ignore[arg-type]
        generator = kwargs.pop("generator", None) or torch.Generator().manual_seed(seed)
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, generator=generator, **kwargs)
        self.seed = seed
        self._served = 0
        self._skip = 0

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        skip, self._skip = self._skip, 0
        epoch = getattr(self.sampler, "epoch", 0)
        self.generator.manual_seed(self.seed * 1_000_003 + epoch + 1)  # type: ignore[union-attr]
        if skip and isinstance(self.sampler, EpochSeededSampler) and self.batch_size is not None:
            self.sampler.start = skip * self.batch_size
            skip_by_consuming = 0
        else:
            skip_by_consuming = skip  # a foreign sampler (e.g. DDP's wrapper): skip by loading
        self._served = skip
        iterator = super().__iter__()
        for _ in range(skip_by_consuming):
            next(iterator)
        for batch in iterator:
            self._served += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """How many batches of the current epoch have been served."""
        return {"batches_served": self._served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Make the next iteration start after the batches already served."""
        self._skip = int(state.get("batches_served", 0))
