"""Explanation metrics as pure functions returning one score per example (B,)."""

from metrics.functional.faithfulness import (
    REMOVALS,
    curve_auc,
    deletion_auc,
    insertion_auc,
    perturbation_curve,
    sensitivity_n,
)
from metrics.functional.infidelity import infidelity
from metrics.functional.localisation import pointing_game, relevance_mass, relevance_rank, spurious_share
from metrics.functional.randomisation import (
    RANDOMISATION_SIMILARITIES,
    RandomisationResult,
    cascading_randomisation,
    parameter_layers,
)
from metrics.functional.robustness import (
    PERTURBATIONS,
    SIMILARITIES,
    explanation_robustness,
    map_similarity,
    perturb,
    topk_attack,
)
from metrics.functional.sensitivity import avg_sensitivity, local_lipschitz, max_sensitivity, sensitivity_samples
from metrics.functional.similarity import hog_similarity, ssim
from metrics.functional.stacking import DEFAULT_PASS_ELEMENTS, default_pass_images, pass_budget

__all__ = [
    "DEFAULT_PASS_ELEMENTS",
    "PERTURBATIONS",
    "RANDOMISATION_SIMILARITIES",
    "REMOVALS",
    "SIMILARITIES",
    "RandomisationResult",
    "average_ranks",
    "avg_sensitivity",
    "cascading_randomisation",
    "cosine",
    "curve_auc",
    "default_pass_images",
    "deletion_auc",
    "hog_similarity",
    "explanation_robustness",
    "infidelity",
    "insertion_auc",
    "kendall",
    "local_lipschitz",
    "map_similarity",
    "max_sensitivity",
    "parameter_layers",
    "pass_budget",
    "pearson",
    "perturb",
    "perturbation_curve",
    "pointing_game",
    "relevance_mass",
    "relevance_rank",
    "sensitivity_n",
    "sensitivity_samples",
    "spearman",
    "spurious_share",
    "ssim",
    "topk_attack",
    "topk_intersection",
]
