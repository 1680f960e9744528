"""Infidelity (Yeh, Hsieh, Suggala, Inouye & Ravikumar, "On the (In)fidelity and Sensitivity of
Explanations", NeurIPS 2019).

    INFD(Φ, f, x) = E_I[ (Iᵀ Φ(x) − (f_t(x) − f_t(x − I)))² ],    I ~ N(0, σ² Id)

estimated with n samples, where f_t is the target's logit (the quantity the attribution
methods explain). An explanation is judged on how well its linear prediction of the output
change matches the true change. With ``normalize`` the attribution is first rescaled by the
optimal β = E[IᵀΦ · Δf] / E[(IᵀΦ)²] (Yeh et al., and Captum's ``normalize=True``), so that
explanations that are right up to a scale are not penalised:
INFD = E[(β IᵀΦ − Δf)²]. Lower is better. Each sample is one forward pass of the whole batch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attributions import AttributionMethod
from common.example_noise import example_ids, example_noise
from metrics.functional.common import check_perturbations, check_positive_int, target_scores

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
    """
    n_samples = check_positive_int("n_samples", n_samples)
    check_perturbations(perturbations, n_samples, x)
    phi = (method(model, x, target) if attribution is None else attribution).flatten(1).double()  # (B, D)
    clean = target_scores(model, x, target).double()  # (B,)
    ids = example_ids(x.shape[0], ids, x.device)
    predicted_change, true_change = [], []
    for j in range(n_samples):
        if perturbations is None:
            noise = sigma * example_noise(tuple(x.shape[1:]), ids, seed, _INFIDELITY_STREAM, j, "normal", x.dtype)
        else:
            noise = perturbations[j]
        predicted_change.append((noise.flatten(1).double() * phi).sum(dim=1))  # Iᵀ Φ(x), (B,)
        true_change.append(clean - target_scores(model, x - noise, target).double())  # f(x) − f(x − I)
    a = torch.stack(predicted_change, dim=1)  # (B, n)
    b = torch.stack(true_change, dim=1)
    if normalize:
        denom = (a * a).mean(dim=1, keepdim=True)
        beta = torch.where(denom > 0, (a * b).mean(dim=1, keepdim=True) / denom.clamp_min(1e-300), torch.zeros_like(denom))
        a = beta * a
    return ((a - b) ** 2).mean(dim=1).float()
