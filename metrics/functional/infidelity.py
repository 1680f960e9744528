"""Infidelity (Yeh, Hsieh, Suggala, Inouye & Ravikumar, "On the (In)fidelity and Sensitivity of
Explanations", NeurIPS 2019).

    INFD(Φ, f, x) = E_I[ (Iᵀ Φ(x) − (f_t(x) − f_t(x − I)))² ],    I ~ N(0, σ² Id)

estimated with n samples, where f_t is the target's logit (the quantity the attribution
methods explain). An explanation is judged on how well its linear prediction of the output
change matches the true change. With ``normalize`` the attribution is first rescaled by the
optimal β = E[IᵀΦ · Δf] / E[(IᵀΦ)²] (Yeh et al., and Captum's ``normalize=True``), so that
explanations that are right up to a scale are not penalised:
INFD = E[(β IᵀΦ − Δf)²]. Lower is better. The clean batch and the n·B perturbed inputs go
through the model in stacked passes of up to M images (:mod:`metrics.functional.stacking`):
⌈(n + 1)·B / M⌉ forward passes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attributions import AttributionMethod
from common.example_noise import example_ids, example_noise
from metrics.functional.common import check_perturbations, check_positive_int, target_scores
from metrics.functional.stacking import explain_stacked, resolve_pass_budget, stacked_map

_INFIDELITY_STREAM = 6


def infidelity(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    method: AttributionMethod,
    sigma: float = 0.1,
    n_samples: int = 50,
    normalize: bool = True,
    attribution: Tensor | None = None,
    perturbations: Tensor | None = None,
    seed: int = 0,
    ids: Tensor | None = None,
    pass_budget: int | None = None,
) -> Tensor:
    """Infidelity per example: (B,).

    Args:
        model: the classifier.
        x: (B, C, H, W) inputs.
        target: (B,) explained classes.
        method: the attribution method.
        sigma: σ of the Gaussian perturbations I.
        n_samples: n.
        normalize: rescale Φ by the optimal β first.
        attribution: Φ(x) when already computed.
        perturbations: fixed I (n_samples, B, C, H, W) instead of random ones.
        seed: seed of the random I.
        ids: (B,) example identities for the noise.
        pass_budget: M, images per forward pass (None: the enclosing
            :func:`~metrics.functional.stacking.pass_budget`, else its default).
    """
    n_samples = check_positive_int("n_samples", n_samples)
    check_perturbations(perturbations, n_samples, x)
    images = resolve_pass_budget(pass_budget, x)
    phi = (explain_stacked(model, x, target, method, images) if attribution is None else attribution).flatten(1).double()  # (B, D)
    ids = example_ids(x.shape[0], ids, x.device)

    def build(block: int, examples: slice) -> tuple[Tensor, Tensor]:
        """Block 0: the clean inputs (I = 0); block j + 1: x − I_j."""
        if block == 0:
            return x[examples], torch.zeros_like(x[examples])
        j = block - 1
        if perturbations is None:
            noise = sigma * example_noise(tuple(x.shape[1:]), ids[examples], seed, _INFIDELITY_STREAM, j, "normal", x.dtype)
        else:
            noise = perturbations[j, examples]
        return x[examples] - noise, noise

    def evaluate(stacked: tuple[Tensor, ...], examples: Tensor) -> Tensor:
        moved, noise = stacked
        scores = target_scores(model, moved, target[examples]).double()  # f_t(x − I), (rows,)
        predicted = (noise.flatten(1).double() * phi[examples]).sum(dim=1)  # Iᵀ Φ(x), (rows,)
        return torch.stack([scores, predicted], dim=1)  # (rows, 2)

    rows = stacked_map(n_samples + 1, x.shape[0], images, build, evaluate)  # (n + 1, B, 2)
    clean = rows[0, :, 0]  # f_t(x), (B,)
    a = rows[1:, :, 1].T  # Iᵀ Φ(x), (B, n)
    b = clean.unsqueeze(1) - rows[1:, :, 0].T  # f(x) − f(x − I), (B, n)
    if normalize:
        denom = (a * a).mean(dim=1, keepdim=True)
        beta = torch.where(denom > 0, (a * b).mean(dim=1, keepdim=True) / denom.clamp_min(1e-300), torch.zeros_like(denom))
        a = beta * a
    return ((a - b) ** 2).mean(dim=1).float()
