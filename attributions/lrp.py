"""Layer-wise relevance propagation (Bach, Binder, Montavon, Klauschen, Müller & Samek, "On
Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise Relevance
Propagation", PLoS ONE 2015; Montavon, Binder, Lapuschkin, Samek & Müller, "Layer-Wise
Relevance Propagation: An Overview", 2019) through zennit (Anders et al., the LRP authors'
PyTorch library).

The relevance R = f_t(x) of the target logit is redistributed layer by layer down to the
pixels, each layer by a rule. For a linear or convolutional layer z_k = Σ_j a_j w_jk + b_k:

- ε-rule:   R_j = Σ_k a_j w_jk / (z_k + ε·sign(z_k)) · R_k
- γ-rule:   R_j = Σ_k a_j (w_jk + γ w_jk⁺) / Σ_j a_j (w_jk + γ w_jk⁺) · R_k
- z⁺-rule:  the γ-rule's limit γ → ∞ (positive weights only)
- flat:     R_j = Σ_k 1 / Σ_j 1 · R_k (relevance spread evenly over the receptive field)
- z^B-rule: for the first layer, on inputs bounded by l ≤ x ≤ h (Montavon et al. 2017)

Composites (``composite``), zennit's names:

- "epsilon_plus_flat" (default, zennit's recommendation): flat on the first layer, z⁺ on the
  other convolutions, ε on the dense layers.
- "epsilon_gamma_box" (Montavon et al. 2019's recipe): z^B on the first convolution with the
  [0, 1] pixel bounds, γ on the other convolutions, ε on the dense layers.
- "epsilon": the ε-rule on every layer, sums and average pools included (ε-LRP of Bach et
  al.; ``epsilon`` → 0 with no biases gives input × gradient on ReLU networks, Ancona et al.,
  ICLR 2018).

Everywhere: activations pass relevance on (zennit's Pass), average pooling and zennit's ``Sum``
redistribute it in proportion to their inputs, max-pooling passes it to the maximum (its
gradient), BatchNorm either is merged into the convolution before it (zennit's
``SequentialMergeBatchNorm`` canonizer, when it directly follows one) or passes relevance on.

How robustlens's models are handled:

- The normalisation first layer ``(x − mean) / std`` (a module with ``mean`` and ``std`` before
  the first linear layer) passes relevance on unchanged: a pixel's relevance is that of its
  normalised value. z^B's bounds are those of the first linear layer's input, the normalised
  images of an all-0 and an all-1 input (so the box is [0, 1] in pixel space).
- A last softmax or log-softmax module (``ismail2021_mnist``) is skipped: the relevance enters
  at its input, the target's logit (LRP explains scores, not probabilities).
- Residual blocks: a plain ``out + shortcut`` would hand each summand the whole relevance. The
  pre-activation blocks of ``preact_resnet18`` and the WideResNets (``wrn28_10``,
  ``wrn34_10``) and torchvision's ResNet blocks are canonized so that the sum is zennit's ``Sum``
  module (relevance split in proportion to the summands). In pre-activation networks a
  BatchNorm follows a sum or feeds a shortcut, so their BatchNorms are not merged (they pass
  relevance on); torchvision ResNets use zennit's ``ResNetCanonizer``. Other architectures
  with additions written in ``forward`` run, but relevance at such a sum is not conserved.
- Every call checks that the canonized model computes the same logits as the model; if a
  canonizer changed them (a BatchNorm merged into a convolution whose output also goes
  elsewhere), the call raises a ValueError naming the model rather than explain another
  function.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor, nn
from zennit.canonizers import AttributeCanonizer, Canonizer, SequentialMergeBatchNorm
from zennit.composites import EpsilonGammaBox, EpsilonPlusFlat, LayerMapComposite, layer_map_base
from zennit.core import Composite
from zennit.layer import Sum
from zennit.rules import Epsilon, Pass
from zennit.torchvision import ResNetCanonizer
from zennit.types import Linear as ZennitLinear

from attributions.base import AttributionMethod, register_method
from common.modes import ModelMode

CompositeName = Literal["epsilon_plus_flat", "epsilon_gamma_box", "epsilon"]
COMPOSITES: tuple[str, ...] = ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon")
#: relative difference of the canonized model's logits above which a call is refused
CANONIZER_TOLERANCE = 1e-4
_SOFTMAXES = (nn.Softmax, nn.LogSoftmax)
_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _pre_activation_forward(self: Any, x: Tensor) -> Tensor:
    """``PreActBlock.forward`` (preact_resnet18) with the residual sum through zennit's ``Sum``."""
    out = self.relu1(self.bn1(x))
    shortcut = self.shortcut(out) if self.shortcut is not None else x
    out = self.conv2(self.relu2(self.bn2(self.conv1(out))))
    return self.canonizer_sum(torch.stack([out, shortcut], dim=-1))


def _wide_forward(self: Any, x: Tensor) -> Tensor:
    """``WideBasicBlock.forward`` (WideResNets) with the residual sum through zennit's ``Sum``."""
    activated = self.relu1(self.bn1(x))
    shortcut = x if self.shortcut is None else self.shortcut(activated)
    out = self.conv2(self.dropout(self.relu2(self.bn2(self.conv1(activated)))))
    return self.canonizer_sum(torch.stack([out, shortcut], dim=-1))


#: robustlens's residual blocks (module, class name) -> their forward with an explicit Sum
RESIDUAL_FORWARDS: dict[tuple[str, str], Callable[..., Tensor]] = {
    ("lightning_modules.backbones", "PreActBlock"): _pre_activation_forward,
    ("lightning_modules.wide_resnet", "WideBasicBlock"): _wide_forward,
}


def _residual_forward(module: nn.Module) -> Callable[..., Tensor] | None:
    cls = type(module)
    return RESIDUAL_FORWARDS.get((cls.__module__, cls.__qualname__))


class ResidualSumCanonizer(AttributeCanonizer):
    """Routes the residual sum of robustlens's pre-activation blocks through zennit's ``Sum``."""

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @staticmethod
    def _attribute_map(name: str, module: nn.Module) -> dict[str, Any] | None:
        forward = _residual_forward(module)
        if forward is None:
            return None
        return {"forward": forward.__get__(module), "canonizer_sum": Sum()}


def canonizers_for(model: nn.Module) -> list[Canonizer]:
    """The canonizers LRP applies to ``model`` (see the module docstring)."""
    modules = list(model.modules())
    if any(_residual_forward(m) is not None for m in modules):
        return [ResidualSumCanonizer()]
    if any(type(m).__module__ == "torchvision.models.resnet" and type(m).__name__ in ("BasicBlock", "Bottleneck") for m in modules):
        return [ResNetCanonizer()]
    if any(isinstance(m, _BN_TYPES) for m in modules):
        return [SequentialMergeBatchNorm()]
    return []


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if next(m.children(), None) is None]


def input_layers(model: nn.Module) -> tuple[nn.Module | None, nn.Module, nn.Module | None]:
    """The normalisation module before the first linear layer (or None), that first linear layer,
    and a last softmax/log-softmax module (or None).

    Raises:
        ValueError: the model has no linear or convolutional layer.
    """
    leaves = [m for _, m in _leaves(model)]
    first = next((i for i, m in enumerate(leaves) if isinstance(m, ZennitLinear)), None)
    if first is None:
        raise ValueError(f"model must have a linear or convolutional layer for LRP; {type(model).__name__} has none")
    normalise = next((m for m in leaves[:first] if isinstance(getattr(m, "mean", None), Tensor) and isinstance(getattr(m, "std", None), Tensor)), None)
    last = leaves[-1] if leaves and isinstance(leaves[-1], _SOFTMAXES) else None
    return normalise, leaves[first], last


def model_label(model: nn.Module) -> str:
    """The class of the backbone inside robustlens's ``Sequential(normalize, net)``, or the model's."""
    net = getattr(model, "net", None)
    return type(net if isinstance(net, nn.Module) else model).__name__


class LRP(AttributionMethod, name="lrp"):
    """Layer-wise relevance propagation of the target logit with a zennit composite.

    Args:
        composite: "epsilon_plus_flat", "epsilon_gamma_box" or "epsilon" (module docstring).
        epsilon: ε of the ε-rule (dense layers; every layer with "epsilon").
        gamma: γ of the γ-rule ("epsilon_gamma_box").
        model_mode: "eval" (BatchNorm on running statistics, which merging into a convolution
            assumes), "train" or None.
    """

    differentiable = False

    def __init__(
        self,
        composite: CompositeName = "epsilon_plus_flat",
        epsilon: float = 1e-6,
        gamma: float = 0.25,
        model_mode: ModelMode | None = "eval",
    ) -> None:
        super().__init__(model_mode)
        if composite not in COMPOSITES:
            raise ValueError(f"composite must be one of {COMPOSITES}, got {composite!r}")
        for field, value in (("epsilon", epsilon), ("gamma", gamma)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{field} must be a number >= 0, got {value!r}")
        self.composite = composite
        self.epsilon = float(epsilon)
        self.gamma = float(gamma)

    def check_model(self, model: nn.Module) -> None:
        """Raise a ValueError when the model has no linear or convolutional layer."""
        input_layers(model)

    def build_composite(self, model: nn.Module, x: Tensor) -> Composite:
        """The zennit composite for ``model`` and inputs like ``x``."""
        normalise, first, _ = input_layers(model)
        layer_map = [(type(normalise), Pass())] if normalise is not None else []
        canonizers = canonizers_for(model)
        if self.composite == "epsilon_plus_flat":
            return EpsilonPlusFlat(epsilon=self.epsilon, layer_map=layer_map, canonizers=canonizers)
        if self.composite == "epsilon_gamma_box":
            low, high = first_layer_bounds(model, first, x)
            return EpsilonGammaBox(low=low, high=high, epsilon=self.epsilon, gamma=self.gamma, layer_map=layer_map, canonizers=canonizers)
        # The sums and average pools take the same ε: the ε-rule on a layer of unit weights.
        rules = layer_map + layer_map_base(self.epsilon) + [(ZennitLinear, Epsilon(epsilon=self.epsilon))]
        return LayerMapComposite(layer_map=rules, canonizers=canonizers)

    def attribute(self, model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
        x = inputs.detach().requires_grad_(True)
        composite = self.build_composite(model, x)
        _, _, last = input_layers(model)
        expected = None
        if model.training not in _CANONIZERS_CHECKED.get(model, ()):  # structural: once per model and mode
            with torch.no_grad():
                expected = model(x)
        scores: list[Tensor] = []
        handle = last.register_forward_hook(lambda m, args, out: scores.append(args[0])) if last is not None else None
        try:
            with composite.context(model) as modified:
                output = modified(x)
                logits = scores[-1] if scores else output
                if expected is not None:
                    check_same_function(model, expected, output)
                    _CANONIZERS_CHECKED[model] = _CANONIZERS_CHECKED.get(model, frozenset()) | {model.training}
                relevance = torch.zeros_like(logits).scatter(1, target.long().view(-1, 1), logits.detach().gather(1, target.long().view(-1, 1)))
                (result,) = torch.autograd.grad(logits, [x], grad_outputs=relevance)
        finally:
            if handle is not None:
                handle.remove()
        return result


#: models whose canonized forward was found equal to their own: whether a canonizer keeps the
#: function depends on the architecture (a BatchNorm merged into a convolution whose output is also
#: used elsewhere) and the mode (BatchNorm's statistics), not on the weights, so each model object
#: is checked on its first call in each mode only.
_CANONIZERS_CHECKED: weakref.WeakKeyDictionary[nn.Module, frozenset[bool]] = weakref.WeakKeyDictionary()


def check_same_function(model: nn.Module, expected: Tensor, output: Tensor) -> None:
    """Raise a ValueError naming the model when the canonized model's output differs."""
    scale = expected.abs().max().clamp(min=1.0)
    if not torch.allclose(output.detach(), expected, rtol=0.0, atol=CANONIZER_TOLERANCE * float(scale)):
        raise ValueError(
            f"lrp cannot explain {model_label(model)}: its canonizers ({[type(c).__name__ for c in canonizers_for(model)]}) "
            "change the model's output (a BatchNorm merged into a convolution whose output is also used elsewhere?); "
            "choose another method or add the architecture's canonizer to attributions.lrp"
        )


def first_layer_bounds(model: nn.Module, first: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """The input of the first linear layer for an all-0 and an all-1 image shaped like one of
    ``x``: the [0, 1] pixel box as that layer sees it, (1, ...) each."""
    seen: list[Tensor] = []
    handle = first.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    try:
        with torch.no_grad():
            model(torch.zeros_like(x[:1]))
            model(torch.ones_like(x[:1]))
    finally:
        handle.remove()
    low, high = seen[0], seen[-1]
    return torch.minimum(low, high), torch.maximum(low, high)


register_method("lrp_epsilon", LRP, default_in=(), composite="epsilon")
register_method("lrp_gamma_box", LRP, default_in=(), composite="epsilon_gamma_box")
