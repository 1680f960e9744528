"""Training objectives: ``objective(model, x, y) -> ObjectiveOutput(loss, logs, logits)``.

Plain PyTorch; nothing here imports Lightning, so a notebook can train or evaluate with them.
"""

from losses.base import Objective, ObjectiveOutput, StepContext
from losses.erm import ERM
from losses.pgd_at import EpsilonWarmup, PGDAdversarialTraining, adversarial_example, scaled_attack

__all__ = [
    "ERM",
    "EpsilonWarmup",
    "Objective",
    "ObjectiveOutput",
    "PGDAdversarialTraining",
    "StepContext",
    "adversarial_example",
    "scaled_attack",
]
