"""Input-gradient norm penalty ("double backpropagation").

Drucker & LeCun, "Improving generalization performance using double backpropagation", IEEE
TNN 1992; Ross & Doshi-Velez, "Improving the Adversarial Robustness and Interpretability of
Deep Neural Networks by Regularizing their Input Gradients", AAAI 2018:

    λ · R,   R = meanᵢ ‖∇ₓ CE(f(xᵢ), yᵢ)‖₂²,

with λ the ``weight`` of this part in a :class:`losses.WeightedSum` (this objective returns R).
Each example's gradient is that of its own loss, so λ does not depend on the batch size. On a
linear model f(x) = Wx + b the gradient is Wᵀ(p − onehot(y)), p = softmax(f(x)).

Converting λ from code that penalises the gradient of the batch-mean loss,
``λ' · Σ (∂ mean_j CE_j / ∂X)²`` (the form of Ross & Doshi-Velez's code and most
re-implementations): ∂ mean_j CE_j / ∂xᵢ = ∇CE(xᵢ)/B, so that penalty is
λ'/B² · Σᵢ ‖∇CE(xᵢ)‖² = (λ'/B) · meanᵢ ‖∇CE(xᵢ)‖², i.e. **λ = λ'/B** (λ' = 100 at B = 128 is
λ ≈ 0.78 here), which is why λ' runs to 10²–10⁵ in such code.

A regulariser: it returns the unweighted penalty R alone and no logits; compose it with ERM or
PGD-AT through :class:`losses.WeightedSum`, λ as the part's ``weight`` (a part's weight
defaults to 1, λ' = B in batch-mean code; the synthetic recipe's 0.1 keeps clean accuracy while
shrinking ∇ₓ severalfold). Cost: one gradient with ``create_graph=True`` and its backward, about
2–3 ERM steps; within a :class:`WeightedSum` the clean forward is shared with ERM's and the
gradient with :class:`losses.CurvaturePenalty`'s. Needs eager mode (no ``torch.compile``) and
refuses float16 autocast (see :mod:`losses.input_gradients`).
"""

from __future__ import annotations

from torch import Tensor, nn

from losses.base import Objective, ObjectiveOutput, StepContext, refuse_penalty_weight, upcast
from losses.gradient_pairs import clean_gradient
from losses.input_gradients import refuse_float16_autocast


class InputGradientPenalty(Objective):
    """R = meanᵢ ‖∇ₓ CE(f(xᵢ), yᵢ)‖², differentiable in the weights; λ is the part's weight.

    Args:
        penalty_weight: retired; giving it raises ``ValueError`` naming the part's ``weight``,
            which now holds λ (per-example convention: λ = λ'/B from batch-mean code).
    """

    log_name = "input_gradient"

    def __init__(self, penalty_weight: float | None = None) -> None:
        refuse_penalty_weight(penalty_weight, type(self).__name__)
        super().__init__()

    def forward(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext | None = None) -> ObjectiveOutput:
        refuse_float16_autocast(x, type(self).__name__)
        grad = clean_gradient(model, x, y, "loss", context)  # (B, C, H, W), shared within a step
        grad_norm_sq = upcast(grad.flatten(1)).pow(2).sum(1).mean()
        return ObjectiveOutput(grad_norm_sq, {"penalty": grad_norm_sq.detach(), "grad_norm_sq": grad_norm_sq.detach()}, None)
