"""Run a function in several CPU processes joined by a gloo process group, and collect results.

    results = run_distributed(my_fn, tmp_path, world_size=2, args=(data,))

``my_fn(rank, world_size, *args)`` must be defined at module level (processes are spawned and
import it by name); whatever it returns is saved with ``torch.save`` and returned in rank
order. Each process uses one intra-op thread so that two ranks do not fight over the cores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _entry(rank: int, fn: Callable[..., Any], world_size: int, init_file: str, out_dir: str, args: Sequence[Any]) -> None:
    torch.set_num_threads(1)
    # A rank that fails must not leave the other waiting in a collective for gloo's 30 minutes.
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size, timeout=timedelta(seconds=120)
    )
    try:
        result = fn(rank, world_size, *args)
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_distributed(
    fn: Callable[..., Any], tmp_path: Path, world_size: int = 2, args: Sequence[Any] = ()
) -> list[Any]:
    """Spawn ``world_size`` processes running ``fn(rank, world_size, *args)``; their results."""
    init_file = tmp_path / "dist_init"
    out_dir = tmp_path / "dist_out"
    out_dir.mkdir(parents=True, exist_ok=True)
    mp.spawn(_entry, args=(fn, world_size, str(init_file), str(out_dir), tuple(args)), nprocs=world_size, join=True)
    return [torch.load(out_dir / f"rank{rank}.pt", weights_only=False) for rank in range(world_size)]


def split_sizes(n: int, world_size: int) -> list[int]:
    """Uneven shares of n examples (rank 0 gets the most), to exercise uneven gathers."""
    base = [n // world_size] * world_size
    base[0] += n - sum(base)
    if world_size > 1 and base[-1] > 1:
        base[0] += 1
        base[-1] -= 1
    return base
