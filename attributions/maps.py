"""From an attribution shaped like the input to one relevance per pixel.

Explanation metrics compare images pixel by pixel, whatever the number of channels. The
protocol of Ghorbani et al. (AAAI 2019) and Chen et al. (NeurIPS 2019) sums the absolute
attribution over channels; localisation and faithfulness metrics that care about the sign use
the plain channel sum instead.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

MapReduction = Literal["abs_sum", "sum"]
MAP_REDUCTIONS: tuple[str, ...] = ("abs_sum", "sum")


def pixel_map(attribution: Tensor, reduction: MapReduction = "abs_sum") -> Tensor:
    """Reduce an attribution (B, C, H, W) to a per-pixel map (B, H, W).

    Args:
        attribution: Φ(x), shaped like the input batch.
        reduction: "abs_sum" for Σ_c |Φ_c| (the robustness protocol), "sum" for Σ_c Φ_c (signed
            relevance, for localisation and faithfulness).
    """
    if attribution.dim() != 4:
        raise ValueError(f"attribution must be (B, C, H, W), got shape {tuple(attribution.shape)}")
    if reduction == "abs_sum":
        return attribution.abs().sum(dim=1)
    if reduction == "sum":
        return attribution.sum(dim=1)
    raise ValueError(f"reduction must be one of {MAP_REDUCTIONS}, got {reduction!r}")
