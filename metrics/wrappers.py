"""torchmetrics wrappers that accumulate per-example explanation scores across batches and processes.

Each metric function returns one score per example; a wrapper's ``update(scores)`` adds them
to states that reduce across processes by summation (or concatenation for per-layer tables),
so that ``compute()`` under DDP equals the value on all the data in one process. Per-rank
averages are never averaged.

Undefined scores (NaN: a constant map for a rank correlation, an image without a mask for a
localisation score) are left out of the mean and counted in ``undefined``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


class MeanScore(Metric):
    """Mean of per-example scores over everything seen, ignoring NaN (counted apart).

    States: ``total`` (sum of defined scores, float64), ``count`` (defined scores) and
    ``undefined`` (NaN scores), all reduced by "sum".
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better: bool | None = None

    total: Tensor
    count: Tensor
    undefined: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("undefined", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, scores: Tensor) -> None:
        """Add a batch of per-example scores (B,)."""
        if scores.dim() != 1:
            raise ValueError(f"scores must be a (B,) tensor of per-example scores, got shape {tuple(scores.shape)}")
        scores = scores.detach()
        defined = ~torch.isnan(scores)
        self.total += scores[defined].double().sum()
        self.count += defined.sum()
        self.undefined += (~defined).sum()

    def compute(self) -> Tensor:
        """The mean of the defined scores (NaN when there is none)."""
        mean = self.total / self.count.clamp_min(1)
        return torch.where(self.count > 0, mean, torch.full_like(mean, float("nan"))).float()


class PerLayerScores(Metric):
    """Per-example rows of per-layer scores (B, L), concatenated; ``compute()`` is the per-layer
    mean over examples, NaN ignored: (L,). State ``scores`` reduces by "cat"."""

    full_state_update = False
    is_differentiable = False
    higher_is_better: bool | None = False

    scores: list[Tensor]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("scores", default=[], dist_reduce_fx="cat")

    def update(self, scores: Tensor) -> None:
        """Add a batch of per-example, per-layer scores (B, L)."""
        if scores.dim() != 2:
            raise ValueError(f"scores must be a (B, L) tensor of per-layer scores, got shape {tuple(scores.shape)}")
        self.scores.append(scores.detach().float())

    def compute(self) -> Tensor:
        rows = dim_zero_cat(self.scores)  # (N, L)
        return rows.nanmean(dim=0)


class TopKIntersection(MeanScore):
    """Mean top-k intersection of Φ(x) and Φ(x'); see :func:`common.similarity.topk_intersection`."""

    higher_is_better = True


class SpearmanCorrelation(MeanScore):
    """Mean Spearman's ρ of Φ(x) and Φ(x'); see :func:`common.similarity.spearman`."""

    higher_is_better = True


class KendallTau(MeanScore):
    """Mean Kendall's τ_b of Φ(x) and Φ(x'); see :func:`common.similarity.kendall`."""

    higher_is_better = True


class CosineSimilarity(MeanScore):
    """Mean cosine similarity of Φ(x) and Φ(x'); see :func:`common.similarity.cosine`."""

    higher_is_better = True


class MaxSensitivity(MeanScore):
    """Mean max-sensitivity; see :func:`metrics.functional.max_sensitivity`."""

    higher_is_better = False


class AvgSensitivity(MeanScore):
    """Mean average-sensitivity; see :func:`metrics.functional.avg_sensitivity`."""

    higher_is_better = False


class LocalLipschitz(MeanScore):
    """Mean local Lipschitz estimate; see :func:`metrics.functional.local_lipschitz`."""

    higher_is_better = False


class Infidelity(MeanScore):
    """Mean infidelity; see :func:`metrics.functional.infidelity`."""

    higher_is_better = False


class DeletionAUC(MeanScore):
    """Mean area under the deletion curve; see :func:`metrics.functional.deletion_auc`."""

    higher_is_better = False


class InsertionAUC(MeanScore):
    """Mean area under the insertion curve; see :func:`metrics.functional.insertion_auc`."""

    higher_is_better = True


class SensitivityN(MeanScore):
    """Mean Sensitivity-n correlation; see :func:`metrics.functional.sensitivity_n`."""

    higher_is_better = True


class PointingGame(MeanScore):
    """Pointing-game accuracy; see :func:`metrics.functional.pointing_game`."""

    higher_is_better = True


class RelevanceMass(MeanScore):
    """Mean relevance mass accuracy; see :func:`metrics.functional.relevance_mass`."""

    higher_is_better = True


class RelevanceRank(MeanScore):
    """Mean relevance rank accuracy; see :func:`metrics.functional.relevance_rank`."""

    higher_is_better = True


class SpuriousShare(MeanScore):
    """Mean share of attribution on the spurious patch; see :func:`metrics.functional.spurious_share`."""

    higher_is_better = False


class ModelRandomisation(PerLayerScores):
    """Per-layer mean similarity under cascading randomisation (lower: the method depends more on
    the learnt weights, which is what passing the sanity check means); see
    :func:`metrics.functional.cascading_randomisation`."""

    higher_is_better = False
