"""Empirical risk minimisation: plain cross-entropy on the clean inputs."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from losses.base import Objective, ObjectiveOutput, StepContext, upcast
from losses.input_gradients import clean_forward


class ERM(Objective):
    """Cross-entropy on clean inputs, ``L = meanᵢ CE(f(xᵢ), yᵢ)``.

    Args:
        label_smoothing: ε of label smoothing (Szegedy et al., CVPR 2016), in [0, 1).
    """

    log_name = "erm"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext | None = None) -> ObjectiveOutput:
        # Within a WeightedSum the clean forward is shared with the parts that need it.
        _, logits = clean_forward(model, x, context, needs_input_grad=False)
        loss = F.cross_entropy(upcast(logits), y, label_smoothing=self.label_smoothing)
        return ObjectiveOutput(loss, {"ce": loss.detach()}, logits)
