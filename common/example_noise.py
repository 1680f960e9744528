"""Per-example random numbers: the noise of example i depends on (seed, stream, id_i, sample j) only.

Seeded attacks (evaluation) and metrics that sample perturbations (sensitivity, infidelity,
Sensitivity-n, ...) must give an example the same score whatever batch it sits in, in whatever
position, on whichever rank: otherwise a probe set split over two processes would score
differently from the same set in one process, and curves would move when the batch size changes.
One generator drawing for the whole batch gives every example a value that depends on the batch
layout; here each example's values come from a generator seeded by a hash of its coordinates
(splitmix64 of the seed, a per-use stream constant, the example's id and the sample index). Each
draw is one small fill per example, cheap next to the forward passes the samples feed.
"""

from __future__ import annotations

import functools
from typing import Literal

import torch
from torch import Tensor

_MASK64 = (1 << 64) - 1


def _splitmix64(value: int) -> int:
    """One round of the splitmix64 finaliser (Steele, Lea & Flood, OOPSLA 2014)."""
    z = (value + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def example_seed(seed: int, stream: int, example_id: int, sample: int) -> int:
    """A 63-bit generator seed for one example and sample, mixing all four coordinates."""
    h = _splitmix64(seed & _MASK64)
    for value in (stream, example_id, sample):
        h = _splitmix64(h ^ (value & _MASK64))
    return h >> 1


def example_ids(batch_size: int, ids: Tensor | None, device: torch.device) -> Tensor:
    """``ids`` checked against the batch, or the positions 0..B−1 when None."""
    if ids is None:
        return torch.arange(batch_size, device=device)
    if tuple(ids.shape) != (batch_size,):
        raise ValueError(f"example_ids must have shape ({batch_size},), got {tuple(ids.shape)}")
    return ids.to(device=device, dtype=torch.int64)


def example_noise(
    shape: tuple[int, ...],
    ids: Tensor,
    seed: int,
    stream: int,
    sample: int = 0,
    distribution: Literal["uniform", "normal"] = "uniform",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Noise shaped ``(B, *shape)`` whose row i depends on ``ids[i]``, never on B or the order.

    Args:
        shape: shape of one example's noise.
        ids: (B,) integer identities of the examples (dataset indices, or positions).
        seed: user seed.
        stream: a constant that separates the uses of noise (one per metric).
        sample: index j of the perturbation sample.
        distribution: "uniform" on [0, 1) or standard "normal".
    """
    out = torch.empty((ids.shape[0], *shape), device=ids.device, dtype=dtype)
    generator = torch.Generator(device=ids.device)
    for i, example_id in enumerate(ids.tolist()):
        generator.manual_seed(example_seed(seed, stream, example_id, sample))
        if distribution == "uniform":
            out[i].uniform_(generator=generator)
        else:
            out[i].normal_(generator=generator)
    return out


_FINGERPRINT_LEVELS = 65535


@functools.lru_cache(maxsize=8)
def _fingerprint_weights(numel: int, device: torch.device) -> Tensor:
    """Fixed pseudo-random hashing weights, drawn once per input size and device (every seeded
    attack call hashes its batch with them)."""
    generator = torch.Generator().manual_seed(0x5EED)
    weights = torch.randint(1, 2**62, (numel,), generator=generator, dtype=torch.int64)
    return weights.to(device)


def content_ids(x: Tensor) -> Tensor:
    """(B,) int64 identities computed from the examples' pixels, for examples without an id.

    Each image is quantised to 16-bit levels and hashed by an integer dot product with fixed
    pseudo-random weights (wrapping 64-bit arithmetic, exact and order-free on any device), so
    the same image gets the same id in any batch, position or process.
    """
    levels = torch.round(x.detach().flatten(1).float().clamp(0.0, 1.0) * _FINGERPRINT_LEVELS).to(torch.int64)
    return (levels * _fingerprint_weights(levels.shape[1], x.device)).sum(dim=1)
