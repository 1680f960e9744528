"""Evaluation under DDP counts every example exactly once, also when a split does not divide by
the number of processes: Lightning's distributed sampler would repeat examples to even out the
shares; the datamodules give evaluation loaders an unpadded one instead."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl

from datamodules import SyntheticShapes
from tests.conftest import tiny_trainer_kwargs
from tests.monitoring import tiny_data, tiny_model


def _with_trainer(dm: SyntheticShapes, world_size: int, rank: int, use_distributed_sampler: bool = True) -> SyntheticShapes:
    dm.trainer = SimpleNamespace(  # type: ignore[assignment]
        distributed_sampler_kwargs={"num_replicas": world_size, "rank": rank} if world_size > 1 else None,
        _accelerator_connector=SimpleNamespace(use_distributed_sampler=use_distributed_sampler),
    )
    return dm


@pytest.mark.parametrize("size, world_size", [(33, 2), (10, 3), (7, 7)])
def test_evaluation_loaders_split_a_split_without_repeating_an_example(size: int, world_size: int) -> None:
    shares = []
    for rank in range(world_size):
        dm = _with_trainer(tiny_data(val_size=size, test_size=size, eval_batch_size=4), world_size, rank)
        dm.setup("fit")
        for loader in (dm.val_dataloader(), dm.test_dataloader()):
            indices = list(iter(loader.sampler))
            assert len(loader.dataset) == size and len(indices) in (size // world_size, size // world_size + 1)
        shares.append(list(iter(dm.val_dataloader().sampler)))
    assert sorted(i for share in shares for i in share) == list(range(size))  # each example once
    # The training loader is left to Lightning (which pads it, as DDP training needs equal steps).
    assert _with_trainer(tiny_data(), 2, 0).train_dataloader().sampler.__class__.__name__ == "EpochSeededSampler"


def test_a_single_process_or_a_sampler_turned_off_is_left_alone() -> None:
    assert _with_trainer(tiny_data(), 1, 0).evaluation_sampler(range(5)) is None  # type: ignore[arg-type]
    assert _with_trainer(tiny_data(), 2, 0, use_distributed_sampler=False).evaluation_sampler(range(5)) is None  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one example per process"):
        _with_trainer(tiny_data(), 4, 0).evaluation_sampler(range(3))  # type: ignore[arg-type]


@pytest.mark.slow  # two Lightning processes: about 15 s
def test_two_processes_validate_an_odd_split_as_one_does(tmp_path: Path) -> None:
    """33 validation images in batches of 4: shares of 17 and 16, five batches on one process and
    four on the other; no reduction may hang and every number must equal one process's."""
    pl.seed_everything(0)
    dm = tiny_data(val_size=33, eval_batch_size=4)
    model = tiny_model(dm, batch_norm=False)
    single = pl.Trainer(**tiny_trainer_kwargs()).validate(model, dm, verbose=False)[0]
    kwargs = tiny_trainer_kwargs() | {"devices": 2, "strategy": "ddp_spawn", "default_root_dir": str(tmp_path)}
    double = pl.Trainer(**kwargs).validate(model, tiny_data(val_size=33, eval_batch_size=4), verbose=False)[0]
    assert single.keys() == double.keys() == {"val/loss", "val/acc", "val/acc_pgd"}
    for key in ("val/acc", "val/acc_pgd"):
        assert abs(single[key] * 33 - round(single[key] * 33)) < 1e-4, key  # a count of 33 examples
    assert double == pytest.approx(single, abs=1e-6)
