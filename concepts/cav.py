"""Concept activation vectors (Kim et al., "Interpretability Beyond Feature Attribution:
Quantitative Testing with Concept Activation Vectors (TCAV)", ICML 2018, section 3.1).

A CAV v_C is the normal of a linear classifier that separates a layer's activations of
concept examples from those of random counter-examples, oriented toward the concept. It is
fitted here as L2-regularised logistic regression,

    min_{w, b}  (1/n) Σ_i log(1 + exp(−s_i (w·h_i + b))) + (α/2) ‖w‖²,   s_i = +1 concept, −1 random,

exactly, by Newton's method in the span of the training activations (a convex problem with one
minimiser: the same data give the same CAV, whatever the layer's width), and
v_C = w / ‖w‖. Held-out accuracy is measured as in the authors' ``tcav`` code: a seeded split
keeps about a third of each set apart, the classifier is fitted on the rest.

Departures from the authors' code: their default linear model is scikit-learn's
``SGDClassifier`` (hinge loss, α = 0.01, stochastic); their ``logistic`` option is
scikit-learn's ``LogisticRegression``. Logistic regression with the same α and a deterministic
solver is used here, so that a CAV depends on the data and the seed only; only the direction
(its sign per input gradient) enters the TCAV score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

#: share of each set held out to measure the CAV's accuracy (the authors' ``test_size``)
TEST_FRACTION = 0.33


@dataclass(frozen=True)
class CAV:
    """A concept activation vector.

    Attributes:
        vector: (D,) unit normal of the separating hyperplane, pointing toward the concept.
        accuracy: accuracy of the classifier on the held-out examples of both sets (NaN when a
            set is too small to hold any out).
    """

    vector: Tensor
    accuracy: float


def _split(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(train, test) row indices of an n-row set: a third held out when n >= 3, else none."""
    order = torch.randperm(n, generator=generator)
    n_test = int(round(TEST_FRACTION * n)) if n >= 3 else 0
    return order[n_test:], order[:n_test]


def _objective(z: Tensor, b: Tensor, features: Tensor, signs: Tensor, alpha: float) -> Tensor:
    margins = signs * (features @ z + b)  # (n,)
    return torch.nn.functional.softplus(-margins).mean() + 0.5 * alpha * (z * z).sum()


def _fit(features: Tensor, signs: Tensor, alpha: float, max_iter: int) -> tuple[Tensor, Tensor]:
    """(w (D,), b) minimising the regularised logistic loss, exactly, by Newton's method.

    The minimiser's w lies in the span of the n training rows (the loss sees w only through
    X w, and any component orthogonal to the rows only adds to ‖w‖²). With the thin SVD
    X = U S Vᵀ (rank r <= n), w = V z and the problem is the same logistic regression on the
    r features U S: Newton's method on r + 1 unknowns (backtracking on the objective) then
    converges in a few steps however wide the layer is.
    """
    u, singular, vh = torch.linalg.svd(features, full_matrices=False)  # (n, r), (r,), (r, D)
    keep = singular > singular.max() * 1e-10 if singular.numel() else singular.bool()
    reduced = u[:, keep] * singular[keep]  # (n, r)
    basis = vh[keep]  # (r, D)
    n, r = reduced.shape
    design = torch.cat([reduced, torch.ones(n, 1, dtype=reduced.dtype)], dim=1)  # (n, r + 1)
    ridge = torch.full((r + 1,), alpha, dtype=reduced.dtype)
    ridge[-1] = 1e-12  # the intercept is not regularised; a whisker keeps H invertible
    theta = torch.zeros(r + 1, dtype=reduced.dtype)
    value = _objective(theta[:r], theta[r], reduced, signs, alpha)
    for _ in range(max_iter):
        margins = signs * (design @ theta)  # (n,)
        p = torch.sigmoid(-margins)  # (n,): derivative of softplus(−m) is −σ(−m)
        grad = -(design.T @ (signs * p)) / n + torch.cat([alpha * theta[:r], theta.new_zeros(1)])  # (r + 1,)
        hessian = (design.T * (p * (1 - p))) @ design / n + torch.diag(ridge)  # (r + 1, r + 1)
        step = torch.linalg.solve(hessian, -grad)
        decrement = float(-(grad @ step))  # Newton decrement²: the predicted decrease × 2
        if decrement < 1e-20:
            break
        t = 1.0
        while True:  # backtracking (Armijo) line search; the objective is convex
            candidate = theta + t * step
            new = _objective(candidate[:r], candidate[r], reduced, signs, alpha)
            if new <= value - 0.25 * t * decrement or t < 1e-10:
                break
            t *= 0.5
        theta, value = candidate, new
    return basis.T @ theta[:r], theta[r]


def _check(concept: Tensor, random: Tensor) -> None:
    if concept.dim() != 2 or random.dim() != 2 or concept.shape[1] != random.shape[1]:
        raise ValueError(f"concept and random must be (n, D) activations of one layer, got {tuple(concept.shape)} and {tuple(random.shape)}")
    if concept.shape[0] < 2 or random.shape[0] < 2:
        raise ValueError(f"concept and random sets must hold at least 2 examples each, got {concept.shape[0]} and {random.shape[0]}")


def fit_cavs(pairs: Sequence[tuple[Tensor, Tensor]], alpha: float = 0.01, seeds: Sequence[int] | None = None, max_iter: int = 100) -> list[CAV]:
    """The CAV of each (concept activations, random activations) pair.

    Args:
        pairs: ``(concept (n_c, D), random (n_r, D))`` activations of one layer (flattened).
        alpha: L2 regularisation strength (the authors' default, 0.01).
        seeds: seed of each pair's held-out split (None: 0, 1, 2, ...).
        max_iter: Newton steps at most.

    Raises:
        ValueError: sets of different widths, fewer than 2 examples in a set, or alpha <= 0.
    """
    if not pairs:
        return []
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    seeds = list(range(len(pairs))) if seeds is None else list(seeds)
    features, signs, tests = [], [], []
    for (concept, random), seed in zip(pairs, seeds):
        _check(concept, random)
        generator = torch.Generator().manual_seed(seed)
        c_train, c_test = _split(concept.shape[0], generator)
        r_train, r_test = _split(random.shape[0], generator)
        features.append(torch.cat([concept[c_train], random[r_train]]).double().cpu())  # (n, D)
        signs.append(torch.cat([torch.ones(len(c_train)), -torch.ones(len(r_train))]).double())  # (n,)
        tests.append((concept[c_test], random[r_test]))
    fitted = [_fit(f, sign, alpha, max_iter) for f, sign in zip(features, signs)]
    cavs = []
    for p, ((concept, _), (c_test, r_test)) in enumerate(zip(pairs, tests)):
        accuracy = float("nan")
        if len(c_test) and len(r_test):
            test = torch.cat([c_test, r_test]).double().cpu()
            test_signs = torch.cat([torch.ones(len(c_test)), -torch.ones(len(r_test))]).double()
            accuracy = float(((test @ fitted[p][0] + fitted[p][1]) * test_signs > 0).double().mean())
        w = fitted[p][0]
        norm = w.norm()
        vector = w / norm if norm > 0 else w
        cavs.append(CAV(vector.to(dtype=concept.dtype, device=concept.device), accuracy))
    return cavs


def fit_cav(concept: Tensor, random: Tensor, alpha: float = 0.01, seed: int = 0, max_iter: int = 100) -> CAV:
    """The CAV separating ``concept`` activations (n_c, D) from ``random`` activations (n_r, D);
    see :func:`fit_cavs`."""
    return fit_cavs([(concept, random)], alpha, [seed], max_iter)[0]
