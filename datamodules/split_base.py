"""What the file-backed datamodules share: options, split caching and dataloaders.

A subclass says how to build one split (:meth:`SplitImageDataModule.build_split`); this class
checks the common options in ``__init__``, builds each split once when first asked (by
``setup``, a dataloader or :meth:`ImageDataModule.probe_batch`), and serves the loaders. The
training split is augmented when ``augment`` is on; validation and test never are.
"""

from __future__ import annotations

from torch.utils.data import DataLoader

from datamodules.base import SPLITS, ImageDataModule
from datamodules.image_split import PADDING_MODES, ImageSplit, PaddingMode, RandomCropFlip

STAGE_SPLITS: dict[str, tuple[str, ...]] = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("test",),
}


class SplitImageDataModule(ImageDataModule):
    """Base of datamodules whose splits are :class:`ImageSplit` datasets.

    Args:
        val_size: validation examples held out of the training set, as a count (int) or a
            fraction (float in (0, 1)); drawn by a permutation seeded with ``seed``.
        seed: seed of the train/validation split (independent of the training seed).
        batch_size: training batch size.
        eval_batch_size: validation/test batch size.
        num_workers: dataloader worker processes.
        augment: random crop after padding and horizontal flip on the training split.
        crop_padding: pixels of padding before the random crop (0: no crop).
        padding_mode: "constant" (zeros) or "reflect".
        horizontal_flip: random left-right flips (off where flipping changes the class).
    """

    def __init__(
        self,
        val_size: int | float,
        seed: int,
        batch_size: int,
        eval_batch_size: int,
        num_workers: int,
        augment: bool,
        crop_padding: int,
        padding_mode: PaddingMode,
        horizontal_flip: bool,
    ) -> None:
        super().__init__()
        if isinstance(val_size, bool) or not (
            (isinstance(val_size, int) and val_size >= 1) or (isinstance(val_size, float) and 0.0 < val_size < 1.0)
        ):
            raise ValueError(f"val_size must be a count >= 1 or a fraction in (0, 1), got {val_size!r}")
        for name, size in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if size < 1:
                raise ValueError(f"{name} must be >= 1, got {size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {crop_padding}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        self.val_size = val_size
        self.seed = seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.augment = augment
        self.train_augmentation = (
            RandomCropFlip(crop_padding, padding_mode, horizontal_flip)
            if augment and (crop_padding > 0 or horizontal_flip)
            else None
        )
        self._splits: dict[str, ImageSplit] = {}

    def build_split(self, split: str) -> ImageSplit:
        """Build the dataset of ``split`` ("train", "val" or "test"); called once per split."""
        raise NotImplementedError

    def split_dataset(self, split: str) -> ImageSplit:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if split not in self._splits:
            self._splits[split] = self.build_split(split)
        return self._splits[split]

    def setup(self, stage: str) -> None:
        for split in STAGE_SPLITS.get(stage, SPLITS):
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
