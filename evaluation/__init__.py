"""The evaluation core: every number the monitoring callbacks log and a report prints is computed
here, by one algorithm, so a number means the same thing wherever it appears.

Plain PyTorch (and torchmetrics for sums across processes), no Lightning: the callbacks in
``callbacks/`` choose probe sets, cadence and publishing, ``report/`` plans and writes, and
both call:

- :mod:`evaluation.robust_accuracy`: correctness under a list of attacks at several radii, the
  per-example worst case over the attacks and over every smaller radius;
- :mod:`evaluation.explanation_scores`: attribution methods × explanation metrics;
- :mod:`evaluation.randomisation`: the cascading model-parameter randomisation check.
"""

from evaluation.explanation_scores import (
    TARGETS,
    BatchScores,
    ScoreSummary,
    ScoreTable,
    Target,
    explained_classes,
    explanation_scores,
    score_batch,
)
from evaluation.randomisation import SIMILARITIES, RandomisationSummary, RandomisationTable, randomisation_check
from evaluation.robust_accuracy import (
    RobustAccuracy,
    RobustCorrectness,
    RobustCounts,
    check_attacks,
    check_radii,
    robust_correctness,
)

__all__ = [
    "SIMILARITIES",
    "TARGETS",
    "BatchScores",
    "RandomisationSummary",
    "RandomisationTable",
    "RobustAccuracy",
    "RobustCorrectness",
    "RobustCounts",
    "ScoreSummary",
    "ScoreTable",
    "Target",
    "check_attacks",
    "check_radii",
    "explained_classes",
    "explanation_scores",
    "randomisation_check",
    "robust_correctness",
    "score_batch",
]
