"""Plumbing shared by the metric functions: running the model the same way everywhere."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attributions.base import normal_tensor, select_logits
from common.modes import module_mode


def target_scores(model: nn.Module, x: Tensor, target: Tensor, output: str = "logit") -> Tensor:
    """f_t(x) per example (B,): the target's logit or softmax probability, no graph, eval mode.

    Metrics evaluate the model as deployed: BatchNorm on running statistics, dropout off; the
    model's own flags are restored afterwards.
    """
    with torch.no_grad(), module_mode(model, "eval"):
        logits = model(normal_tensor(x)).float()  # (B, K)
    if output == "logit":
        return select_logits(logits, target)
    if output == "probability":
        return select_logits(logits.softmax(dim=1), target)
    raise ValueError(f"output must be one of ('logit', 'probability'), got {output!r}")


def predicted(model: nn.Module, x: Tensor) -> Tensor:
    """The model's predicted classes (B,), eval mode, no graph."""
    with torch.no_grad(), module_mode(model, "eval"):
        return model(normal_tensor(x)).argmax(dim=1)


def check_positive_int(name: str, value: int) -> int:
    """``value`` as an int, or a ValueError naming ``name``."""
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_perturbations(perturbations: Tensor | None, n_samples: int, x: Tensor) -> None:
    """Validate user-given perturbations: (n_samples, B, C, H, W)."""
    if perturbations is not None and tuple(perturbations.shape) != (n_samples, *x.shape):
        raise ValueError(
            f"perturbations must have shape (n_samples, *x.shape) = {(n_samples, *x.shape)}, "
            f"got {tuple(perturbations.shape)}"
        )
