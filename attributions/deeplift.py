"""DeepLIFT with the Rescale rule (Shrikumar, Greenside & Kundaje, "Learning Important Features
Through Propagating Activation Differences", ICML 2017).

Attributions are differences from a reference input x' (the baseline), propagated by
"multipliers" that replace derivatives. Linear layers keep their weights as multipliers; every
elementwise nonlinearity y = σ(z) takes the Rescale rule's

    m = (σ(z) − σ(z')) / (z − z')        (the derivative σ'(z) where |z − z'| ≤ 1e-10)

where z' is the unit's input on the reference forward pass. The chain rule over multipliers
then gives Φ(x) = (x − x') ⊙ m_x, with summation-to-delta: Σ_i Φ(x)_i = f_t(x) − f_t(x').

Implementation: the Rescale rule as a gradient override. The reference x' goes through the model
first and every nonlinearity module records its inputs; then each nonlinearity returns
σ(z) with gradient m (``σ(z).detach() + m · (z − z.detach())``: the same forward values,
the Rescale multiplier as its derivative), and m_x is the ordinary input gradient of f_t. One
reference forward and one forward-backward per batch, batched like any gradient method. This
is written by hand, not taken from Captum, because Captum is a test-only dependency here and
the rule is this short; Captum's ``DeepLift`` computes the same thing for the modules it
knows and is the reference in the tests.

Reached: ``nn.ReLU``, ``nn.ReLU6``, ``nn.LeakyReLU``, ``nn.ELU``, ``nn.Softplus``, ``nn.Tanh``,
``nn.Sigmoid`` modules (as for guided backprop, ``F.relu`` calls inside ``forward`` are not;
every robustlens backbone uses modules). Max-pooling and softmax layers keep their gradient
(Captum applies its own rule to max-pooling; the two agree on networks without max-pooling, and
are compared there in the tests). The Normalize first layer is affine, so its
multiplier is its derivative 1/std, and the attribution is in pixel space. On a ReLU network
without biases and a zero baseline every multiplier equals the derivative (Ancona et al., ICLR
2018), so DeepLIFT-Rescale is input × gradient.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor, nn

from attributions.base import AttributionMethod, select_logits
from common.filters import gaussian_blur
from common.modes import ModelMode

Baseline = Literal["zero", "blur"]
BASELINES: tuple[str, ...] = ("zero", "blur")
#: nonlinearity modules the Rescale rule replaces
RESCALED: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.Softplus, nn.Tanh, nn.Sigmoid)
_TOLERANCE = 1e-10


class RescaledActivation(nn.Module):
    """Wraps an elementwise nonlinearity: records its reference inputs, then applies it with the
    Rescale multiplier as its derivative."""

    def __init__(self, activation: nn.Module) -> None:
        super().__init__()
        self.activation = activation
        self.references: list[tuple[Tensor, Tensor]] = []  # (z', σ(z')) per call on the reference pass
        self.recording = True
        self.calls = 0

    def _apply(self, z: Tensor) -> Tensor:
        return self.activation(z.clone() if getattr(self.activation, "inplace", False) else z)

    def forward(self, z: Tensor) -> Tensor:
        if self.recording:
            y = self._apply(z)
            self.references.append((z.detach(), y.detach()))
            return y
        if self.calls >= len(self.references):
            raise RuntimeError(f"{type(self.activation).__name__} is called more often than on the reference pass")
        z_ref, y_ref = self.references[self.calls]
        self.calls += 1
        with torch.no_grad():
            y = self._apply(z)
        delta = z.detach() - z_ref
        with torch.enable_grad():
            leaf = z.detach().requires_grad_(True)
            (slope,) = torch.autograd.grad(self._apply(leaf).sum(), [leaf])
        far = delta.abs() > _TOLERANCE
        multiplier = torch.where(far, (y - y_ref) / torch.where(far, delta, torch.ones_like(delta)), slope)
        return y + multiplier * (z - z.detach())


@contextmanager
def rescale_rule(model: nn.Module) -> Iterator[list[RescaledActivation]]:
    """Within the body, every nonlinearity module of ``model`` (:data:`RESCALED`) is wrapped in a
    :class:`RescaledActivation` (recording first); the modules are put back on exit."""
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    wrappers: list[RescaledActivation] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, RESCALED):
                wrapper = RescaledActivation(child)
                swapped.append((parent, name, child))
                wrappers.append(wrapper)
                setattr(parent, name, wrapper)
    try:
        yield wrappers
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)


class DeepLiftRescale(AttributionMethod, name="deeplift"):
    """DeepLIFT (Rescale rule) of the target logit against a baseline.

    Args:
        baseline: "zero" (black image, the default of Shrikumar et al. and Ancona et al.) or
            "blur" (the input blurred by a Gaussian of σ = ``blur_sigma`` pixels).
        blur_sigma: σ in pixels of the "blur" baseline.
        model_mode: "eval", "train" or None (leave the model as it is).
    """

    differentiable = False

    def __init__(self, baseline: Baseline = "zero", blur_sigma: float = 5.0, model_mode: ModelMode | None = "eval") -> None:
        super().__init__(model_mode)
        if baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
        if isinstance(blur_sigma, bool) or not isinstance(blur_sigma, (int, float)) or not blur_sigma > 0:
            raise ValueError(f"blur_sigma must be > 0, got {blur_sigma!r}")
        self.baseline = baseline
        self.blur_sigma = float(blur_sigma)

    def make_baseline(self, x: Tensor) -> Tensor:
        """The reference x' for a batch ``x`` (B, C, H, W), detached."""
        x = x.detach()
        return torch.zeros_like(x) if self.baseline == "zero" else gaussian_blur(x, self.blur_sigma)

    def attribute(self, model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
        x = inputs.detach().requires_grad_(True)
        reference = self.make_baseline(x)
        with rescale_rule(model) as wrappers:
            with torch.no_grad():
                model(reference)
            for wrapper in wrappers:
                wrapper.recording = False
            score = select_logits(model(x), target)  # (B,)
            (multipliers,) = torch.autograd.grad(score.sum(), [x])
        return (x.detach() - reference) * multipliers
