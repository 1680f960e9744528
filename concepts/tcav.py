"""Testing with concept activation vectors (Kim et al., "Interpretability Beyond Feature
Attribution: Quantitative Testing with Concept Activation Vectors (TCAV)", ICML 2018).

For a layer l with activations h_l(x), a class k with logit f_k and a CAV v_C of concept C
(:mod:`concepts.cav`), the conceptual sensitivity of an input x is the directional derivative

    S_{C,k,l}(x) = ∇_{h_l} f_k(x) · v_C,

and the TCAV score over the class-k inputs X_k is the share that the concept pushes up:

    TCAV_{C,k,l} = |{x ∈ X_k : S_{C,k,l}(x) > 0}| / |X_k|.

Significance (section 3.2, and the authors' ``tcav`` code): CAVs are fitted against R random
counter-example sets r_1..r_R, giving R TCAV scores; a random set r_1 is fitted against each
other random set, giving R − 1 scores of random-versus-random CAVs (the null); a two-sided
t-test (:func:`concepts.stats.ttest_ind`) compares the two. The concept is significant at level
α when p < α (the authors' plots use α = 0.05, optionally Bonferroni-corrected by the caller).

Departure from the authors' code: it takes the gradient of the cross-entropy loss of class k
and counts negative products; here the logit f_k is differentiated and positive products are
counted, as in the paper's definition (the two agree up to the softmax coupling of the other
classes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from common.modes import ModelMode, module_mode
from concepts.cav import CAV, fit_cavs
from concepts.layers import layer_activations, layer_gradients
from concepts.stats import ttest_ind

DEFAULT_SIGNIFICANCE = 0.05
DEFAULT_ALPHA = 0.01


@dataclass(frozen=True)
class ConceptCAVs:
    """A concept's CAVs against each random set, and the random-versus-random CAVs of the null.

    Attributes:
        concept: R CAVs, concept against r_1..r_R.
        random: R − 1 CAVs, r_1 against r_2..r_R.
    """

    concept: list[CAV]
    random: list[CAV]


@dataclass(frozen=True)
class TCAVResult:
    """TCAV scores of one concept for one class, with the significance test.

    Attributes:
        scores: (R,) TCAV score of each concept CAV.
        random_scores: (R − 1,) TCAV score of each random-versus-random CAV.
        accuracies: (R,) held-out accuracy of each concept CAV.
        p_value: two-sided t-test p-value of ``scores`` against ``random_scores`` (NaN when both
            are constant and equal).
        significance: the level α of the test.
    """

    scores: Tensor
    random_scores: Tensor
    accuracies: Tensor
    p_value: float
    significance: float

    @property
    def score(self) -> float:
        """Mean TCAV score over the random sets."""
        return float(self.scores.mean())

    @property
    def significant(self) -> bool:
        """Whether the concept's scores differ from the random ones at level ``significance``."""
        return not math.isnan(self.p_value) and self.p_value < self.significance


def fit_concept_cavs(concept: Tensor, randoms: Sequence[Tensor], alpha: float = DEFAULT_ALPHA, seed: int = 0) -> ConceptCAVs:
    """Fit a concept's CAVs and the null's, from activations (see :class:`ConceptCAVs`).

    Args:
        concept: (n, D) activations of the concept examples.
        randoms: R >= 2 activations (n_i, D) of random counter-example sets.
        alpha: L2 regularisation of the logistic regression.
        seed: seed of the held-out splits (CAV i uses ``seed + i``).

    Raises:
        ValueError: fewer than 2 random sets.
    """
    if len(randoms) < 2:
        raise ValueError(f"random_sets must be at least 2 (one is the null's reference), got {len(randoms)}")
    pairs = [(concept, r) for r in randoms] + [(randoms[0], r) for r in randoms[1:]]
    cavs = fit_cavs(pairs, alpha, [seed + i for i in range(len(pairs))])
    return ConceptCAVs(cavs[: len(randoms)], cavs[len(randoms) :])


def tcav_scores(gradients: Tensor, cavs: Sequence[CAV]) -> Tensor:
    """(len(cavs),) share of the rows of ``gradients`` (N, D) whose product with each CAV is > 0."""
    if not cavs:
        return gradients.new_zeros(0)
    directions = torch.stack([c.vector.to(gradients) for c in cavs])  # (R, D)
    return (gradients @ directions.T > 0).float().mean(dim=0).cpu()  # (R,)


def tcav_test(gradients: Tensor, cavs: ConceptCAVs, significance: float = DEFAULT_SIGNIFICANCE) -> TCAVResult:
    """TCAV scores of the class whose logit gradients (N, D) are given, and their t-test."""
    scores, random_scores = tcav_scores(gradients, cavs.concept), tcav_scores(gradients, cavs.random)
    p_value = ttest_ind(scores.tolist(), random_scores.tolist()).p_value
    accuracies = torch.tensor([c.accuracy for c in cavs.concept])
    return TCAVResult(scores, random_scores, accuracies, p_value, significance)


def tcav(
    model: nn.Module,
    layer: str,
    class_inputs: Tensor,
    target: int,
    concept_inputs: Tensor,
    random_inputs: Sequence[Tensor],
    *,
    alpha: float = DEFAULT_ALPHA,
    significance: float = DEFAULT_SIGNIFICANCE,
    seed: int = 0,
    batch_size: int = 256,
    model_mode: ModelMode | None = "eval",
) -> TCAVResult:
    """The TCAV score of a concept for class ``target`` at ``layer``, with its significance test.

    Args:
        model: the classifier, taking images in [0, 1].
        layer: module name (``model.named_modules()``) whose output is h_l.
        class_inputs: (N, C, H, W) inputs of class ``target`` (X_k).
        target: the class k.
        concept_inputs: (n, C, H, W) examples of the concept.
        random_inputs: R >= 2 sets of random counter-examples (without the concept).
        alpha: L2 regularisation of the CAVs' logistic regression.
        significance: level α of the two-sided t-test.
        seed: seed of the CAVs' held-out splits.
        batch_size: inputs per forward/backward pass.
        model_mode: "eval", "train" or None (the model's modes are restored on return).

    Returns:
        The scores per random set, the null's scores and the p-value. The model's modes, its
        weights' ``.grad`` and the inputs are left as found.
    """
    if not 0.0 < significance < 1.0:
        raise ValueError(f"significance must be in (0, 1), got {significance}")
    with module_mode(model, model_mode):
        concept = layer_activations(model, layer, concept_inputs, batch_size)
        randoms = [layer_activations(model, layer, r, batch_size) for r in random_inputs]
        cavs = fit_concept_cavs(concept, randoms, alpha, seed)
        gradients = layer_gradients(model, layer, class_inputs, target, batch_size)
    return tcav_test(gradients, cavs, significance)
