"""Complexity: how concentrated an explanation is (fewer relevant pixels read more easily).

All three read the per-pixel map r = Σ_c |Φ_c| (:func:`attributions.pixel_map`, "abs_sum"),
flattened to d = H·W values per example; none needs the model.

Sparseness (Chalasani, Chen, Chowdhury, Wu & Jha, "Concise Explanations of Neural Networks
using Adversarial Training", ICML 2020), the Gini index of r sorted increasingly
r_(1) ≤ … ≤ r_(d) (Hurley & Rickard 2009):

    G(r) = Σ_i (2i − d − 1) r_(i) / (d Σ_i r_i)

Convention: this unnormalised form, so G ∈ [0, (d − 1)/d]; a one-hot map scores its maximum
(d − 1)/d and a constant map 0. A map that is zero everywhere scores 0 (no relevance, nothing
concentrated). Quantus 0.6 adds 1e-7 to every value before the same formula, which moves a
one-hot map's score below (d − 1)/d by about 1e-7·d/Σr; it also divides Φ by the batch's
largest |Φ| first, which does not change G.

Complexity (Bhatt, Weller & Moura, "Evaluating and Aggregating Feature-based Model
Explanations", IJCAI 2020): the Shannon entropy of the fractional contributions p_i = r_i / Σ r,

    H(r) = −Σ_i p_i log p_i            (natural log, 0 log 0 = 0)

so a uniform map scores log d and a one-hot map 0; lower is simpler. A zero map scores 0.
Quantus 0.6 computes −Σ p log(p + 1e-12) (a difference below 1e-11 per example).

Effective complexity (Nguyen & Martínez, "On quantitative aspects of model
interpretability", 2020): the number of pixels whose relevance is not negligible,

    EC(r) = #{i : r_i / max_j r_j > ε}

Convention: relevance relative to the example's own largest value, so the count does not depend
on the scale of Φ (a zero map counts 0). Nguyen & Martínez define ε-effective complexity through
the change of the model's loss when the features outside the top k are perturbed; this is the
thresholded count of their simpler proxy, as in Quantus 0.6, except that Quantus divides by the
largest |Φ| of the whole batch (so an example's score depends on the others in its batch) and
counts values strictly above ε of the divided map: identical here when every example is divided
by its own maximum.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attributions import pixel_map


def _flat_relevance(attribution: Tensor) -> Tensor:
    """r = Σ_c |Φ_c| flattened per example, float64: (B, C, H, W) → (B, H·W)."""
    return pixel_map(attribution, "abs_sum").flatten(1).double()


def sparseness(attribution: Tensor) -> Tensor:
    """Gini index of the per-pixel map (B,): (d − 1)/d for one-hot, 0 for constant; higher is sparser.

    Args:
        attribution: Φ(x), (B, C, H, W).

    Returns:
        (B,) float64 Gini indices in [0, (d − 1)/d], d = H·W.
    """
    r = _flat_relevance(attribution).sort(dim=1).values  # (B, d) increasing
    d = r.shape[1]
    weights = 2.0 * torch.arange(1, d + 1, dtype=r.dtype, device=r.device) - d - 1  # (d,)
    total = r.sum(dim=1)  # (B,)
    gini = (r * weights).sum(dim=1) / (d * total.clamp_min(torch.finfo(r.dtype).tiny))
    return torch.where(total > 0, gini, torch.zeros_like(gini))


def complexity(attribution: Tensor) -> Tensor:
    """Entropy of the fractional per-pixel relevance (B,): log d for a uniform map; lower is simpler.

    Args:
        attribution: Φ(x), (B, C, H, W).

    Returns:
        (B,) float64 entropies in nats, in [0, log d].
    """
    r = _flat_relevance(attribution)  # (B, d)
    total = r.sum(dim=1, keepdim=True)  # (B, 1)
    p = r / total.clamp_min(torch.finfo(r.dtype).tiny)
    return -torch.special.xlogy(p, p).sum(dim=1)  # xlogy(0, 0) = 0


def effective_complexity(attribution: Tensor, eps: float = 1e-5) -> Tensor:
    """Pixels whose relevance exceeds ``eps`` times the example's largest (B,); lower is simpler.

    Args:
        attribution: Φ(x), (B, C, H, W).
        eps: ε, the threshold on r_i / max_j r_j, in [0, 1).

    Returns:
        (B,) float64 counts in [0, H·W].
    """
    if isinstance(eps, bool) or not 0.0 <= float(eps) < 1.0:
        raise ValueError(f"eps must be a number in [0, 1), got {eps!r}")
    r = _flat_relevance(attribution)  # (B, d)
    peak = r.max(dim=1, keepdim=True).values  # (B, 1)
    relative = r / peak.clamp_min(torch.finfo(r.dtype).tiny)
    return (relative > eps).sum(dim=1).double()
