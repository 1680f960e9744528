"""The losses an evaluation attack maximises: cross-entropy, the margin (CW) loss and DLR.

Every loss maps logits z (B, K) and labels y (B,) to per-example values (B,), computed in
float32 even under autocast. A gradient attack on cross-entropy stalls where the softmax
saturates: with p_y ≈ 1 the gradient of −log p_y vanishes (it underflows to exactly zero in
float32 once the logit gap exceeds about 100), and PGD reports robustness that is not there.
The margin and DLR losses work on the logits themselves, so their gradients do not vanish:

- ``ce``: L(z, y) = −log softmax(z)_y (Madry et al., ICLR 2018).
- ``margin``: L(z, y) = max_{j≠y} z_j − z_y, the loss f₆ of Carlini & Wagner, "Towards
  Evaluating the Robustness of Neural Networks", IEEE S&P 2017, without its confidence κ.
  Positive exactly when the example is misclassified.
- ``dlr``: the Difference of Logits Ratio of Croce & Hein, "Reliable evaluation of adversarial
  robustness with an ensemble of diverse parameter-free attacks", ICML 2020 (untargeted form):

      DLR(z, y) = −(z_y − max_{j≠y} z_j) / (z_π1 − z_π3 + 10⁻¹²)

  with z_π1 ≥ z_π2 ≥ z_π3 the largest logits. The margin divided by a spread of the logits, so
  the loss is invariant to shifting and rescaling the logits (a saturated or rescaled softmax
  changes nothing). It needs at least 3 classes; the 10⁻¹² in the denominator is the authors'.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch.nn.functional as F
from torch import Tensor

AttackLoss = Literal["ce", "margin", "dlr"]
ATTACK_LOSSES: tuple[str, ...] = ("ce", "margin", "dlr")
LossFn = Callable[[Tensor, Tensor], Tensor]
"""``loss_fn(logits, target) -> (B,)`` per-example losses that an attack maximises."""

#: The fewest classes each loss is defined for (DLR divides by z_π1 − z_π3).
MIN_CLASSES: dict[str, int] = {"ce": 2, "margin": 2, "dlr": 3}


def per_example_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy of each example, in float32 even under autocast."""
    return F.cross_entropy(logits.float(), target, reduction="none")


def _best_other(logits: Tensor, y: Tensor) -> Tensor:
    """max_{j≠y} z_j, (B,)."""
    others = logits.scatter(1, y.view(-1, 1), float("-inf"))
    return others.amax(dim=1)


def margin_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Carlini–Wagner margin max_{j≠y} z_j − z_y per example (B,); > 0 iff misclassified."""
    z = logits.float()
    return _best_other(z, y) - z.gather(1, y.view(-1, 1)).squeeze(1)


def dlr_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Untargeted DLR loss of Croce & Hein (2020) per example (B,); needs at least 3 classes."""
    z = logits.float()
    if z.shape[1] < MIN_CLASSES["dlr"]:
        raise ValueError(f"loss 'dlr' needs at least 3 classes (it divides by z_π1 − z_π3), got {z.shape[1]}")
    top = z.topk(3, dim=1).values  # (B, 3), descending
    z_y = z.gather(1, y.view(-1, 1)).squeeze(1)
    return -(z_y - _best_other(z, y)) / (top[:, 0] - top[:, 2] + 1e-12)


LOSS_FUNCTIONS: dict[str, LossFn] = {"ce": per_example_cross_entropy, "margin": margin_loss, "dlr": dlr_loss}


def check_attack_loss(loss: str) -> str:
    """``loss`` when it names a loss of :data:`ATTACK_LOSSES`; a ValueError naming ``loss`` otherwise."""
    if loss not in ATTACK_LOSSES:
        raise ValueError(f"loss must be one of {ATTACK_LOSSES}, got {loss!r}")
    return loss


def check_loss_classes(loss: str, num_classes: int) -> None:
    """Raise a ValueError naming ``loss`` when it is not defined for ``num_classes`` classes."""
    needed = MIN_CLASSES[check_attack_loss(loss)]
    if num_classes < needed:
        raise ValueError(
            f"loss {loss!r} needs at least {needed} classes (DLR divides by the gap between the first "
            f"and third largest logits), got a model with {num_classes}; use loss 'margin' instead"
        )
