"""Explanation metrics for any ``nn.Module`` (no Lightning here).

Each metric is a class (a ``torchmetrics.Metric``) that owns and checks its options, scores a
batch per example (:meth:`ExplanationMetric.score`) and accumulates the scores across batches
and processes (``update`` / ``compute``). Classes register under a name where they are defined
(:func:`metric_names`); :func:`compute_metric`, :func:`compute_metrics` and :func:`build_metric`
take a name, the import path of a registered class, or a metric object. The numerics are pure
functions in :mod:`metrics.functional`.
"""

from metrics.base import (
    ExplanationMetric,
    MeanScore,
    MetricInputs,
    PerLayerScores,
    metric_names,
)
from metrics.robustness import (
    AttackPerturbation,
    ClassifierPGD,
    CosineSimilarity,
    ExplanationRobustness,
    KendallTau,
    Perturbation,
    Similarity,
    SpearmanCorrelation,
    TopKAttack,
    TopKIntersection,
    UniformNoise,
)
from metrics.sensitivity import AvgSensitivity, AvgSensitivityAbs, LocalLipschitz, MaxSensitivity, MaxSensitivityAbs
from metrics.infidelity import Infidelity
from metrics.faithfulness import DeletionAUC, InsertionAUC, SensitivityN
from metrics.randomisation import IndependentRandomisation, ModelPerturbation, ModelRandomisation, RandomLogit, SmoothedRandomisation
from metrics.localisation import Focus, MaskAUC, MaskTopKIntersection, PointingGame, RelevanceMass, RelevanceRank, SpuriousShare
from metrics.stability import (
    Continuity,
    RelativeInputStability,
    RelativeOutputStability,
    RelativeRepresentationStability,
)
from metrics.complexity import Complexity, EffectiveComplexity, Sparseness
from metrics.axiomatic import Completeness, InputInvariance, NonSensitivity
from metrics.faithfulness_profile import IROF, FaithfulnessCorrelation, Monotonicity, MonotonicityCorrelation, RoadLeRF, RoadMoRF, Selectivity
from metrics.registry import MetricLike, MetricSpec, build_metric, check_metric, compute_metric, compute_metrics, metric_key, metric_spec
from metrics import defaults

__all__ = [
    "MaskTopKIntersection",
    "MaskAUC",
    "Focus",
    "SmoothedRandomisation",
    "RandomLogit",
    "ModelPerturbation",
    "IndependentRandomisation",
    "AttackPerturbation",
    "AvgSensitivity",
    "AvgSensitivityAbs",
    "ClassifierPGD",
    "Completeness",
    "Complexity",
    "Continuity",
    "CosineSimilarity",
    "DeletionAUC",
    "EffectiveComplexity",
    "ExplanationMetric",
    "ExplanationRobustness",
    "FaithfulnessCorrelation",
    "IROF",
    "Infidelity",
    "InputInvariance",
    "InsertionAUC",
    "KendallTau",
    "LocalLipschitz",
    "MaxSensitivity",
    "MaxSensitivityAbs",
    "MeanScore",
    "MetricInputs",
    "MetricLike",
    "MetricSpec",
    "ModelRandomisation",
    "NonSensitivity",
    "Monotonicity",
    "MonotonicityCorrelation",
    "Perturbation",
    "PerLayerScores",
    "PointingGame",
    "RelativeInputStability",
    "RelativeOutputStability",
    "RelativeRepresentationStability",
    "RelevanceMass",
    "RelevanceRank",
    "RoadLeRF",
    "RoadMoRF",
    "Selectivity",
    "SensitivityN",
    "Similarity",
    "Sparseness",
    "SpearmanCorrelation",
    "SpuriousShare",
    "TopKAttack",
    "TopKIntersection",
    "UniformNoise",
    "build_metric",
    "check_metric",
    "compute_metric",
    "compute_metrics",
    "defaults",
    "metric_key",
    "metric_names",
    "metric_spec",
]
