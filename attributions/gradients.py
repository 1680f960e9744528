"""Plain gradient explanations: saliency and input × gradient.

- Saliency (Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks", ICLR workshop
  2014): Φ(x) = ∂f_t/∂x, or its absolute value |∂f_t/∂x|, where f_t is the logit of class t.
- Input × gradient (Shrikumar, Greenside & Kundaje, "Learning Important Features Through
  Propagating Activation Differences", ICML 2017): Φ(x) = x ⊙ ∂f_t/∂x.

On a linear model f(x) = Wx + b, saliency is the weight row W_t and input × gradient is W_t ⊙ x.
"""

from __future__ import annotations

from torch import Tensor, nn

from attributions.base import GradientAttribution
from common.modes import ModelMode


class Saliency(GradientAttribution, name="saliency", default_in=("report", "callbacks")):
    """Gradient of the target logit with respect to the input.

    Args:
        abs: return |∂f_t/∂x| (Simonyan et al., Captum's default) instead of the signed gradient.
        create_graph: keep the graph (training through the explanation, attacking it).
        model_mode: "eval", "train" or None (leave the model as it is).
    """

    def __init__(self, abs: bool = True, create_graph: bool = False, model_mode: ModelMode | None = "eval") -> None:  # noqa: A002
        super().__init__(create_graph, model_mode)
        self.abs = bool(abs)

    def attribute(self, model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
        x = self._input(inputs)  # (B, C, H, W), requires grad
        grad = self.input_gradient(model, x, target)  # (B, C, H, W)
        return grad.abs() if self.abs else grad


class InputXGradient(GradientAttribution, name="input_x_gradient"):
    """Input times the gradient of the target logit: Φ(x) = x ⊙ ∂f_t/∂x.

    Args:
        create_graph: keep the graph (training through the explanation, attacking it).
        model_mode: "eval", "train" or None (leave the model as it is).
    """

    def attribute(self, model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
        x = self._input(inputs)
        return x * self.input_gradient(model, x, target)
