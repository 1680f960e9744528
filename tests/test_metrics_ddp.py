"""Every metric wrapper gives the same value in two processes (gloo, CPU) as in one.

The data is split unevenly across the ranks. The spawned processes import only plain PyTorch
modules (no Lightning), which keeps their start-up short. Two things are checked: the wrappers' reduced
states (sums, counts, concatenated per-layer rows) on fixed scores, NaN included; and the whole
path, each rank scoring its share with ``compute_metrics`` (random draws keyed by the examples'
ids) and accumulating over two batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from attributions import Saliency
from metrics import build_metric, compute_metrics
from tests.ddp import run_distributed, split_sizes
from tests.metric_cases import CHEAP_OPTIONS, package_metric_names, shapes_batch, tiny_model

METRIC_NAMES = package_metric_names()

N = 10


def _fixed_scores() -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(0)
    scores = {}
    for name in METRIC_NAMES:
        shape = (N, 4) if name == "randomisation" else (N,)
        values = torch.rand(shape, generator=g)
        values[3] = float("nan")  # an undefined score, on rank 0
        values[N - 1] = float("nan")  # and one on rank 1
        scores[name] = values
    return scores


def _accumulate(scores: dict[str, Tensor], batches: list[slice]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, values in scores.items():
        metric = build_metric(name)
        for batch in batches:
            metric.update(values[batch])
        results[name] = metric.compute()
        if hasattr(metric, "undefined"):
            with metric.sync_context():  # the count over all ranks (compute() leaves local states)
                results[name + "/undefined"] = metric.undefined.clone()
    return results


def _own_share(rank: int, world_size: int) -> slice:
    sizes = split_sizes(N, world_size)
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def _score(model: nn.Module, data: dict[str, Tensor], share: slice) -> dict[str, Tensor]:
    ids = torch.arange(N)[share]
    return compute_metrics(
        METRIC_NAMES,
        model,
        data["images"][share],
        data["labels"][share],
        Saliency(),
        data["masks"][share],
        data["spurious_masks"][share],
        options=CHEAP_OPTIONS,
        example_ids=ids,
    )


def _rank_main(rank: int, world_size: int, model: nn.Module, data: dict[str, Tensor]) -> dict[str, Any]:
    share = _own_share(rank, world_size)
    halves = [slice(0, 2), slice(2, None)]  # two batches per rank
    fixed = {name: values[share] for name, values in _fixed_scores().items()}
    computed = _score(model, data, share)
    return {
        "fixed": _accumulate(fixed, halves),
        "computed": _accumulate(computed, halves),
        "sizes": split_sizes(N, world_size),
    }


def test_wrappers_equal_in_one_and_two_processes(tmp_path: Path) -> None:
    shapes = shapes_batch(N)
    # Plain tensors and a plain nn.Sequential travel to the spawned processes without Lightning.
    model, data = tiny_model(), {k: getattr(shapes, k) for k in ("images", "labels", "masks", "spurious_masks")}
    single_fixed = _accumulate(_fixed_scores(), [slice(0, 4), slice(4, None)])
    single_computed = _accumulate(_score(model, data, slice(0, N)), [slice(0, N)])

    ranks = run_distributed(_rank_main, tmp_path, world_size=2, args=(model, data))
    assert ranks[0]["sizes"] == [6, 4]  # uneven shares
    for result in ranks:  # every rank holds the reduced value
        for name, value in single_fixed.items():
            torch.testing.assert_close(result["fixed"][name], value, rtol=1e-6, atol=1e-7, msg=name)
        for name, value in single_computed.items():
            torch.testing.assert_close(result["computed"][name], value, rtol=1e-4, atol=1e-5, equal_nan=True, msg=name)
    assert set(single_computed) >= set(METRIC_NAMES)
