"""Stacking perturbation samples into larger passes, bounded by a budget of images per pass.

A sampled metric (sensitivity, local Lipschitz, infidelity, deletion/insertion, Sensitivity-n)
evaluates the model, or the attribution method, on n perturbed copies of a batch of B images.
One call per copy costs n calls of B images; on small models the fixed cost of each call, not
the arithmetic, dominates. Here the n·B perturbed images (plus the clean batch where the metric
needs it) are laid out sample-major, row r = j·B + i for sample j of example i, and cut into
passes of at most M consecutive rows: ⌈rows / M⌉ calls of up to M images. A budget below B is
allowed and splits a sample's batch over passes; M = B is the unstacked evaluation (one call per
sample, the batch as given).

Every random draw stays keyed by (seed, example id, sample) (:mod:`common.example_noise`), so
the images, targets and reductions do not depend on M: with a model whose per-example arithmetic
is independent of the batch size the scores are bitwise equal for any M (tested). Real kernels
are not quite: the CPU's matrix and convolution kernels (oneDNN, MKL; cuDNN alike) choose their
blocking by batch size and move a float32 logit by about one ulp, and Integrated Gradients groups
its path sum by ``internal_batch_size // rows``. Scores then agree to ~1e-7 relative, and to
~1e-5 relative where a metric differences nearly equal logits (infidelity's f(x) − f(x − I) and
Sensitivity-n's drops on an untrained model, where they are tiny).

The budget: the ``pass_budget`` keyword of each metric function, else the innermost
``with pass_budget(images=M):`` block around the call (a context variable, so it follows
threads and asyncio tasks and needs no change in the callers between), else the default of
:func:`default_pass_images`, by the device of the inputs and never fewer than the batch itself:

- on a GPU, 2**21 input elements per pass (2 674 images of 1×28×28, 682 of 3×32×32, B of
  3×224×224), where a larger pass fills the device and each call has a fixed launch cost;
- on a CPU, 2**16 (83 images of 1×28×28, 21 of 3×32×32): a CPU is already busy at B = 128 on
  the quickstart CNN, and larger passes fall out of its caches and run slower per image
  (``benchmarks/metrics_floor.md``: passes of 334 images cost 1.2–1.3×, of 1 337 images
  1.3–2×, passes of 128 there); on a CPU stacking pays only for small batches, whose calls are
  dominated by fixed costs.

Memory per pass grows with M; set it lower for large models.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

#: input elements per pass when no budget is set, by device type (others: "cpu"'s)
DEFAULT_PASS_ELEMENTS: dict[str, int] = {"cuda": 2**21, "cpu": 2**16}

_PASS_IMAGES: contextvars.ContextVar[int | None] = contextvars.ContextVar("robustlens_pass_images", default=None)


def check_pass_budget(images: object, name: str = "pass_budget") -> int:
    """``images`` as an int >= 1, or a ValueError naming the field ``name``."""
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise ValueError(f"{name} must be an integer >= 1 (images per model pass), got {images!r}")
    return images


@contextlib.contextmanager
def pass_budget(images: int) -> Iterator[int]:
    """Within the block, sampled metrics run passes of at most ``images`` images.

    Example::

        with metrics.functional.pass_budget(images=4096):
            scores = compute_metric("infidelity", model, x, y, method)

    Args:
        images: M, images per model (or attribution) call; an integer >= 1.

    Raises:
        ValueError: ``images`` is not an integer >= 1 (before the block runs).
    """
    token = _PASS_IMAGES.set(check_pass_budget(images, "images"))
    try:
        yield images
    finally:
        _PASS_IMAGES.reset(token)


def default_pass_images(image_shape: Sequence[int], batch_size: int, device: torch.device | str = "cpu") -> int:
    """M when none is set: :data:`DEFAULT_PASS_ELEMENTS` of the device's type per pass, never
    fewer than ``batch_size``."""
    numel = 1
    for size in image_shape:
        numel *= int(size)
    elements = DEFAULT_PASS_ELEMENTS.get(torch.device(device).type, DEFAULT_PASS_ELEMENTS["cpu"])
    return max(batch_size, elements // max(numel, 1))


def resolve_pass_budget(pass_budget: int | None, x: Tensor) -> int:
    """M for a batch ``x``: the keyword, else the enclosing :func:`pass_budget`, else the default."""
    if pass_budget is not None:
        return check_pass_budget(pass_budget)
    current = _PASS_IMAGES.get()
    if current is not None:
        return current
    return default_pass_images(tuple(x.shape[1:]), x.shape[0], x.device)


@dataclass(frozen=True)
class Block:
    """The rows of one sample inside a pass: sample ``sample`` of examples ``examples``."""

    sample: int
    examples: slice


def stacked_passes(n_samples: int, batch_size: int, images: int) -> list[list[Block]]:
    """The passes over n_samples × batch_size rows, sample-major, at most ``images`` rows each."""
    total = n_samples * batch_size
    passes = []
    for start in range(0, total, images):
        end = min(start + images, total)
        blocks, row = [], start
        while row < end:
            sample, first = divmod(row, batch_size)
            last = min(batch_size, first + end - row)
            blocks.append(Block(sample, slice(first, last)))
            row += last - first
        passes.append(blocks)
    return passes


def stacked_map(
    n_samples: int,
    batch_size: int,
    images: int,
    build: Callable[[int, slice], tuple[Tensor, ...]],
    evaluate: Callable[[tuple[Tensor, ...], Tensor], Tensor],
) -> Tensor:
    """Evaluate n_samples × batch_size rows in stacked passes; the results as (n_samples, B, ...).

    Args:
        n_samples: n, the blocks of B rows (samples, steps, subsets; the clean batch counts as one
            where the metric stacks it too).
        batch_size: B.
        images: M, rows per pass.
        build: (sample j, examples) -> tensors of the rows of sample j for those examples, each
            with a leading dimension of their number (the model input first, then anything
            ``evaluate`` needs, such as the perturbation itself).
        evaluate: (the built tensors of one pass, concatenated; (rows,) example indices) ->
            (rows, ...) results of the pass.
    """
    out: Tensor | None = None
    for blocks in stacked_passes(n_samples, batch_size, images):
        parts = [build(block.sample, block.examples) for block in blocks]
        stacked = tuple(torch.cat(column) if len(column) > 1 else column[0] for column in zip(*parts))
        device = stacked[0].device
        examples = torch.cat([torch.arange(b.examples.start, b.examples.stop, device=device) for b in blocks])
        result = evaluate(stacked, examples)  # (rows, ...)
        if out is None:
            out = result.new_empty((n_samples, batch_size, *result.shape[1:]))
        row = 0
        for block in blocks:
            count = block.examples.stop - block.examples.start
            out[block.sample, block.examples] = result[row : row + count]
            row += count
    assert out is not None
    return out


def explain_stacked(
    model: nn.Module, x: Tensor, target: Tensor | None, method: Callable[..., Tensor], images: int
) -> Tensor:
    """Φ(x) (B, C, H, W) in calls of at most ``images`` images (one call when images >= B)."""
    if images >= x.shape[0]:
        return method(model, x, target)
    parts = [
        method(model, x[start : start + images], None if target is None else target[start : start + images])
        for start in range(0, x.shape[0], images)
    ]
    return torch.cat(parts)
