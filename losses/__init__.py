"""Training objectives: ``objective(model, x, y) -> ObjectiveOutput(loss, logs, logits)``.

Plain PyTorch; nothing here imports Lightning, so a notebook can train or evaluate with them.

Training losses: :class:`ERM`, :class:`PGDAdversarialTraining`, :class:`TRADES`, :class:`MART`,
:class:`FastAdversarialTraining` (FGSM-RS), :class:`SaliencyGuidedTraining`, :class:`IGSumNorm`; :class:`AWP` wraps
an adversarial-training objective with adversarial weight perturbation. Regularisers, which
return their unweighted penalty alone and are meant to be added to a training loss with
:class:`WeightedSum` (their λ is their part's weight): :class:`InputGradientPenalty`,
:class:`AttributionStability`, :class:`CurvaturePenalty`, :class:`IGNorm`.
"""

from losses.attribution_stability import AttributionStability
from losses.awp import AWP, perturbed_parameters
from losses.base import FORWARD_KEY, Objective, ObjectiveOutput, StepContext
from losses.curvature import CurvaturePenalty
from losses.erm import ERM
from losses.fast_at import FastAdversarialTraining
from losses.ig_norm import IGNorm, integrated_gradients_of_loss
from losses.ig_sum_norm import IGSumNorm
from losses.input_gradient_penalty import InputGradientPenalty
from losses.input_gradients import (
    clean_forward,
    flat_cosine,
    per_example_logit_gradient,
    per_example_loss_gradient,
)
from losses.mart import MART, boosted_cross_entropy, mart_terms
from losses.pgd_at import EpsilonWarmup, PGDAdversarialTraining, adversarial_example, scaled_attack
from losses.saliency_guided import SaliencyGuidedTraining
from losses.trades import TRADES, kl_divergence
from losses.weighted_sum import Part, WeightedSum

__all__ = [
    "AWP",
    "ERM",
    "FORWARD_KEY",
    "MART",
    "TRADES",
    "AttributionStability",
    "CurvaturePenalty",
    "EpsilonWarmup",
    "FastAdversarialTraining",
    "IGNorm",
    "IGSumNorm",
    "InputGradientPenalty",
    "Objective",
    "ObjectiveOutput",
    "PGDAdversarialTraining",
    "Part",
    "SaliencyGuidedTraining",
    "StepContext",
    "WeightedSum",
    "adversarial_example",
    "boosted_cross_entropy",
    "clean_forward",
    "flat_cosine",
    "integrated_gradients_of_loss",
    "kl_divergence",
    "mart_terms",
    "per_example_logit_gradient",
    "per_example_loss_gradient",
    "perturbed_parameters",
    "scaled_attack",
]
