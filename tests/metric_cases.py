"""A tiny model, a batch with ground truth and cheap options for every metric (shared by tests).

Plain PyTorch only at import time: the DDP tests spawn processes that import this module, and
importing Lightning there would cost seconds per process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from datamodules import ShapesTensors

def package_metric_names() -> tuple[str, ...]:
    """Every metric the package registers (not those a test file defines for itself)."""
    from metrics import metric_names, metric_spec

    return tuple(name for name in metric_names() if metric_spec(name).cls.__module__.startswith("metrics."))


#: options that make every metric cheap enough to run them all in a test
CHEAP_OPTIONS: dict[str, dict[str, Any]] = {
    **{f"{s}@pgd": {"steps": 3} for s in ("topk_intersection", "spearman", "kendall", "cosine")},
    **{f"{s}@topk_attack": {"steps": 3} for s in ("topk_intersection", "spearman", "kendall", "cosine")},
    "max_sensitivity": {"n_samples": 3},
    "avg_sensitivity": {"n_samples": 3},
    "max_sensitivity_abs": {"n_samples": 3},
    "avg_sensitivity_abs": {"n_samples": 3},
    "local_lipschitz": {"n_samples": 3},
    "infidelity": {"n_samples": 4},
    "deletion_auc": {"steps": 4},
    "insertion_auc": {"steps": 4},
    "sensitivity_n": {"n_subsets": 4},
    "smoothed_randomisation": {"n_samples": 2},
    "model_perturbation": {"n_samples": 2},
    "relative_input_stability": {"n_samples": 3},
    "relative_output_stability": {"n_samples": 3},
    "relative_representation_stability": {"n_samples": 3},
    "continuity": {"n_steps": 4},
    "faithfulness_correlation": {"n_runs": 4},
    "monotonicity": {"pixels_per_step": 64},
    "monotonicity_correlation": {"pixels_per_step": 32, "n_samples": 2},
    "road_morf": {"percentages": (20, 60)},
    "road_lerf": {"percentages": (20, 60)},
    "irof": {"segmentation": "grid", "patch_size": 8},
    "selectivity": {"patch_size": 8},
}


def tiny_model(seed: int = 0, classes: int = 3) -> nn.Module:
    """An untrained conv-ReLU-conv-ReLU-pool-linear net for 1 × 16 × 16 inputs, in eval mode."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 16),
        nn.ReLU(),
        nn.Linear(16, classes),
    )
    return model.eval()


def shapes_batch(n: int = 10, seed: int = 0) -> ShapesTensors:
    """Synthetic shapes with object masks; every class-0 image carries the spurious patch."""
    from datamodules import generate_shapes

    return generate_shapes(n, 3, 16, 1, seed=seed, spurious_rate=1.0, spurious_class=0)
