"""Sensitivity of explanations to small random input changes: max/avg-sensitivity, local Lipschitz.

Max- and average-sensitivity (Yeh, Hsieh, Suggala, Inouye & Ravikumar, "On the (In)fidelity and
Sensitivity of Explanations", NeurIPS 2019), over n samples δ_j uniform in the L∞ ball of
radius r:

    SENS_max(x) = max_j ‖Φ(x + δ_j) − Φ(x)‖ / Z,      SENS_avg(x) = (1/n) Σ_j ‖Φ(x + δ_j) − Φ(x)‖ / Z

with the Frobenius norm over all input elements. Captum's ``sensitivity_max`` is relative,
Z = ‖Φ(x)‖ (1 when Φ(x) = 0), with r = 0.02 and n = 10; Yeh et al.'s definition and code are
absolute, Z = 1, with r = 0.2 and n = 50 on MNIST. Both are offered (``relative``); the inputs
x + δ are not clipped to [0, 1], as in both references. Lower is more stable.

Local Lipschitz estimate (Alvarez-Melis & Jaakkola, "On the Robustness of Interpretability
Methods", ICML workshop 2018), estimated by sampling x'_j = x + δ_j, δ_j uniform in the L∞ ball
of radius ε:

    L(x) = max_j ‖Φ(x'_j) − Φ(x)‖₂ / ‖x'_j − x‖₂

The n·B perturbed inputs are explained in stacked calls of up to M images
(:mod:`metrics.functional.stacking`): ⌈n·B / M⌉ attribution calls, plus ⌈B / M⌉ for Φ(x) when it
is not given.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from attributions import AttributionMethod
from common.example_noise import example_ids, example_noise
from metrics.functional.common import check_perturbations, check_positive_int
from metrics.functional.stacking import explain_stacked, resolve_pass_budget, stacked_map

_SENSITIVITY_STREAM = 2
_LIPSCHITZ_STREAM = 3


def uniform_ball_noise(x: Tensor, radius: float, sample: int, seed: int, stream: int, ids: Tensor | None) -> Tensor:
    """δ uniform in [−radius, radius]^d per example, (B, C, H, W), layout-independent."""
    ids = example_ids(x.shape[0], ids, x.device)
    u = example_noise(tuple(x.shape[1:]), ids, seed, stream, sample, dtype=x.dtype)
    return (2.0 * u - 1.0) * radius


def _rows(target: Tensor | None, examples: Tensor) -> Tensor | None:
    return None if target is None else target[examples]


def _perturbed_inputs(
    x: Tensor, radius: float, seed: int, stream: int, ids: Tensor | None, perturbations: Tensor | None
) -> Callable[[int, slice], tuple[Tensor, Tensor]]:
    """build(j, examples) -> (x + δ_j, δ_j) for those examples, δ keyed by (seed, id, j)."""
    ids = example_ids(x.shape[0], ids, x.device)

    def build(j: int, examples: slice) -> tuple[Tensor, Tensor]:
        if perturbations is None:
            delta = uniform_ball_noise(x[examples], radius, j, seed, stream, ids[examples])
        else:
            delta = perturbations[j, examples]
        return x[examples] + delta, delta

    return build


def sensitivity_samples(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    method: AttributionMethod,
    radius: float = 0.02,
    n_samples: int = 10,
    relative: bool = True,
    attribution: Tensor | None = None,
    perturbations: Tensor | None = None,
    seed: int = 0,
    ids: Tensor | None = None,
    pass_budget: int | None = None,
) -> Tensor:
    """‖Φ(x + δ_j) − Φ(x)‖ / Z for every example and sample: (B, n_samples).

    Args:
        model: the classifier.
        x: (B, C, H, W) inputs.
        target: (B,) explained classes.
        method: the attribution method.
        radius: r, the L∞ radius of δ.
        n_samples: n.
        relative: divide by ‖Φ(x)‖ (Captum) instead of 1 (Yeh et al.).
        attribution: Φ(x) when already computed.
        perturbations: fixed δ (n_samples, B, C, H, W) instead of random ones.
        seed: seed of the random δ.
        ids: (B,) example identities for the noise.
        pass_budget: M, images per attribution call (None: the enclosing
            :func:`~metrics.functional.stacking.pass_budget`, else its default).
    """
    n_samples = check_positive_int("n_samples", n_samples)
    check_perturbations(perturbations, n_samples, x)
    images = resolve_pass_budget(pass_budget, x)
    phi = explain_stacked(model, x, target, method, images) if attribution is None else attribution
    flat = phi.flatten(1)  # (B, D)
    scale = flat.norm(dim=1) if relative else torch.ones(x.shape[0], device=x.device)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    build = _perturbed_inputs(x, radius, seed, _SENSITIVITY_STREAM, ids, perturbations)

    def evaluate(stacked: tuple[Tensor, ...], examples: Tensor) -> Tensor:
        moved = method(model, stacked[0], _rows(target, examples)).flatten(1)  # (rows, D)
        return (moved - flat[examples]).norm(dim=1) / scale[examples]  # (rows,)

    return stacked_map(n_samples, x.shape[0], images, build, evaluate).T  # (B, n)


def max_sensitivity(model: nn.Module, x: Tensor, target: Tensor, method: AttributionMethod, **options: object) -> Tensor:
    """SENS_max per example (B,); options as :func:`sensitivity_samples`."""
    return sensitivity_samples(model, x, target, method, **options).max(dim=1).values  # type: ignore[arg-type]


def avg_sensitivity(model: nn.Module, x: Tensor, target: Tensor, method: AttributionMethod, **options: object) -> Tensor:
    """SENS_avg per example (B,); options as :func:`sensitivity_samples`."""
    return sensitivity_samples(model, x, target, method, **options).mean(dim=1)  # type: ignore[arg-type]


def local_lipschitz(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    method: AttributionMethod,
    radius: float = 0.1,
    n_samples: int = 20,
    attribution: Tensor | None = None,
    perturbations: Tensor | None = None,
    seed: int = 0,
    ids: Tensor | None = None,
    pass_budget: int | None = None,
) -> Tensor:
    """Sampled local Lipschitz estimate max_j ‖Φ(x + δ_j) − Φ(x)‖₂ / ‖δ_j‖₂ per example: (B,).

    Args: as :func:`sensitivity_samples` (``radius`` is ε).
    """
    n_samples = check_positive_int("n_samples", n_samples)
    check_perturbations(perturbations, n_samples, x)
    images = resolve_pass_budget(pass_budget, x)
    phi = (explain_stacked(model, x, target, method, images) if attribution is None else attribution).flatten(1)  # (B, D)
    build = _perturbed_inputs(x, radius, seed, _LIPSCHITZ_STREAM, ids, perturbations)

    def evaluate(stacked: tuple[Tensor, ...], examples: Tensor) -> Tensor:
        moved_inputs, delta = stacked
        moved = method(model, moved_inputs, _rows(target, examples)).flatten(1)  # (rows, D)
        return (moved - phi[examples]).norm(dim=1) / delta.flatten(1).norm(dim=1).clamp_min(1e-12)  # (rows,)

    ratios = stacked_map(n_samples, x.shape[0], images, build, evaluate)  # (n, B)
    return ratios.amax(dim=0)  # (B,)
