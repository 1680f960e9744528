"""Explanation metrics for any ``nn.Module`` (no Lightning here).

Pure functions in :mod:`metrics.functional` return one score per example; the torchmetrics
wrappers in :mod:`metrics.wrappers` accumulate those scores across batches and processes; the
registry (:func:`compute_metric`, :func:`build_metric`, :data:`METRIC_NAMES`) gives every metric
one call shape. See :mod:`metrics.registry` for the names and their options.
"""

from metrics.registry import (
    METRIC_NAMES,
    METRICS,
    PER_LAYER_METRICS,
    MetricSpec,
    build_metric,
    check_metric,
    compute_metric,
    compute_metrics,
    metric_spec,
)
from metrics.wrappers import (
    AvgSensitivity,
    CosineSimilarity,
    DeletionAUC,
    Infidelity,
    InsertionAUC,
    KendallTau,
    LocalLipschitz,
    MaxSensitivity,
    MeanScore,
    ModelRandomisation,
    PerLayerScores,
    PointingGame,
    RelevanceMass,
    RelevanceRank,
    SensitivityN,
    SpearmanCorrelation,
    SpuriousShare,
    TopKIntersection,
)

__all__ = [
    "METRICS",
    "METRIC_NAMES",
    "PER_LAYER_METRICS",
    "AvgSensitivity",
    "CosineSimilarity",
    "DeletionAUC",
    "Infidelity",
    "InsertionAUC",
    "KendallTau",
    "LocalLipschitz",
    "MaxSensitivity",
    "MeanScore",
    "MetricSpec",
    "ModelRandomisation",
    "PerLayerScores",
    "PointingGame",
    "RelevanceMass",
    "RelevanceRank",
    "SensitivityN",
    "SpearmanCorrelation",
    "SpuriousShare",
    "TopKIntersection",
    "build_metric",
    "check_metric",
    "compute_metric",
    "compute_metrics",
    "metric_spec",
]
