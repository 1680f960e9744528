"""Integrated gradients (Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017).

    IG(x)_i = (x_i − x'_i) · ∫₀¹ ∂f_t(x' + α(x − x'))/∂x_i dα

for a baseline x'. The integral is a quadrature over ``steps`` points α_s with weights w_s, and
IG satisfies completeness, Σ_i IG(x)_i = f_t(x) − f_t(x'), up to the quadrature error.

Baselines: "zero" (black image), "blur" (the input blurred by a Gaussian, Sturmfels, Lundberg &
Lee, "Visualizing the Impact of Feature Attribution Baselines", Distill 2020) and "uniform"
(uniform noise in [0, 1], seeded per example: drawn from (seed, the image's pixels), so an image
gets the same baseline in any batch, position or process). The steps are evaluated in chunks of at most
``internal_batch_size`` rows (examples × steps) per forward pass, which bounds memory.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from attributions.base import GradientAttribution, select_logits
from common.example_noise import content_ids, example_noise
from common.filters import gaussian_blur
from common.modes import ModelMode

Baseline = Literal["zero", "blur", "uniform"]
BASELINES: tuple[str, ...] = ("zero", "blur", "uniform")
Quadrature = Literal["gausslegendre", "riemann_middle", "riemann_trapezoid", "riemann_right"]
QUADRATURES: tuple[str, ...] = ("gausslegendre", "riemann_middle", "riemann_trapezoid", "riemann_right")

_UNIFORM_BASELINE_STREAM = 0x1B


def quadrature(rule: Quadrature, steps: int) -> tuple[list[float], list[float]]:
    """Points α_s in [0, 1] and weights w_s (Σ w_s = 1) of a ``steps``-point rule."""
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return list(0.5 * (nodes + 1.0)), list(0.5 * weights)
    if rule == "riemann_middle":
        return [(s + 0.5) / steps for s in range(steps)], [1.0 / steps] * steps
    if rule == "riemann_right":  # α = 1/m, ..., 1: the sum of Sundararajan et al. and Chen et al.'s code
        return [(s + 1) / steps for s in range(steps)], [1.0 / steps] * steps
    if rule == "riemann_trapezoid":
        if steps < 2:
            raise ValueError(f"steps must be >= 2 for rule='riemann_trapezoid', got {steps}")
        alphas = [s / (steps - 1) for s in range(steps)]
        weights = [1.0 / (steps - 1)] * steps
        weights[0] = weights[-1] = 0.5 / (steps - 1)
        return alphas, weights
    raise ValueError(f"rule must be one of {QUADRATURES}, got {rule!r}")


class IntegratedGradients(GradientAttribution, name="integrated_gradients", default_in=("report", "callbacks")):
    """Integrated gradients along the straight path from a baseline to the input.

    Args:
        steps: quadrature points (100: the protocol of Ghorbani et al. and Chen et al.).
        baseline: "zero", "blur" or "uniform" (see the module docstring).
        rule: "gausslegendre" (Captum's default, accurate for smooth nets), "riemann_middle",
            "riemann_trapezoid" or "riemann_right" (α = 1/m, ..., 1, as the paper's eq. 3 and
            Chen et al.'s code).
        internal_batch_size: rows (examples × steps) per forward pass; None puts all steps in
            one pass. A batch larger than this still gets one step per pass.
        blur_sigma: σ in pixels of the "blur" baseline.
        seed: seed of the "uniform" baseline: each image's baseline is drawn from (seed, its
            pixels) (:func:`common.example_noise.content_ids`), so the same image gets the same
            baseline on every call and in any batch position; the method is deterministic.
        create_graph: keep the graph (training through the explanation, attacking it).
        model_mode: "eval", "train" or None (leave the model as it is).
    """

    def __init__(
        self,
        steps: int = 100,
        baseline: Baseline = "zero",
        rule: Quadrature = "gausslegendre",
        internal_batch_size: int | None = 1024,
        blur_sigma: float = 5.0,
        seed: int = 0,
        create_graph: bool = False,
        model_mode: ModelMode | None = "eval",
    ) -> None:
        super().__init__(create_graph, model_mode)
        if int(steps) != steps or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps}")
        if baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
        if internal_batch_size is not None and (int(internal_batch_size) != internal_batch_size or internal_batch_size < 1):
            raise ValueError(f"internal_batch_size must be an integer >= 1 or None, got {internal_batch_size}")
        if not blur_sigma > 0:
            raise ValueError(f"blur_sigma must be > 0, got {blur_sigma}")
        self.steps = int(steps)
        self.rule = rule
        self.alphas, self.weights = quadrature(rule, self.steps)  # validates rule
        self.baseline = baseline
        self.internal_batch_size = internal_batch_size
        self.blur_sigma = float(blur_sigma)
        self.seed = int(seed)

    def make_baseline(self, x: Tensor) -> Tensor:
        """The baseline x' for a batch ``x`` (B, C, H, W), detached (a constant of the path)."""
        x = x.detach()
        if self.baseline == "zero":
            return torch.zeros_like(x)
        if self.baseline == "blur":
            return gaussian_blur(x, self.blur_sigma)
        ids = content_ids(x)  # (B,) from the pixels: independent of the batch layout
        return example_noise(tuple(x.shape[1:]), ids, self.seed, _UNIFORM_BASELINE_STREAM, dtype=x.dtype)

    def attribute(self, model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
        x = self._input(inputs)  # (B, C, H, W)
        baseline = self.make_baseline(x)  # (B, C, H, W)
        b = x.shape[0]
        per_pass = self.steps if self.internal_batch_size is None else max(1, self.internal_batch_size // b)
        path = x - baseline  # (B, C, H, W)
        avg_grad = torch.zeros_like(x)
        for start in range(0, self.steps, per_pass):
            alphas = self.alphas[start : start + per_pass]
            weights = self.weights[start : start + per_pass]
            s = len(alphas)
            a = torch.tensor(alphas, dtype=x.dtype, device=x.device).view(s, 1, 1, 1, 1)
            w = torch.tensor(weights, dtype=x.dtype, device=x.device).view(s, 1, 1, 1, 1)
            points = (baseline.unsqueeze(0) + a * path.unsqueeze(0)).flatten(0, 1)  # (S·B, C, H, W), step-major
            if not points.requires_grad:
                points.requires_grad_(True)
            score = select_logits(model(points), target.repeat(s))  # (S·B,)
            (grad,) = torch.autograd.grad(score.sum(), [points], create_graph=self.create_graph)
            avg_grad = avg_grad + (w * grad.view(s, *x.shape)).sum(dim=0)  # (B, C, H, W)
        return path * avg_grad
