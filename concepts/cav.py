"""Concept activation vectors (Kim et al., "Interpretability Beyond Feature Attribution:
Quantitative Testing with Concept Activation Vectors (TCAV)", ICML 2018, section 3.1).

A CAV v_C is the normal of a linear classifier that separates a layer's activations of
concept examples from those of random counter-examples, oriented toward the concept. It is
fitted here as L2-regularised logistic regression,

    min_{w, b}  (1/n) Σ_i log(1 + exp(−s_i (w·h_i + b))) + (α/2) ‖w‖²,   s_i = +1 concept, −1 random,

by full-batch L-BFGS from zero (a convex problem: the same data give the same CAV), and
v_C = w / ‖w‖. Held-out accuracy is measured as in the authors' ``tcav`` code: a seeded split
keeps about a third of each set apart, the classifier is fitted on the rest.

Departures from the authors' code: their default linear model is scikit-learn's
``SGDClassifier`` (hinge loss, α = 0.01, stochastic); their ``logistic`` option is
scikit-learn's ``LogisticRegression``. Logistic regression with the same α and a deterministic
solver is used here, so that a CAV depends on the data and the seed only; only the direction
(its sign per input gradient) enters the TCAV score.
"""

from __future__ import annotations

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


def _fit(features: Tensor, signs: Tensor, alpha: float, max_iter: int) -> tuple[Tensor, Tensor]:
    """(w, b) minimising the regularised logistic loss (float64, L-BFGS with strong Wolfe steps)."""
    w = torch.zeros(features.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12, history_size=20,
        line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> Tensor:
        optimizer.zero_grad()
        margins = signs * (features @ w + b)  # (n,)
        loss = torch.nn.functional.softplus(-margins).mean() + 0.5 * alpha * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return w.detach(), b.detach()


def fit_cav(concept: Tensor, random: Tensor, alpha: float = 0.01, seed: int = 0, max_iter: int = 200) -> CAV:
    """The CAV separating ``concept`` activations from ``random`` activations.

    Args:
        concept: (n_c, D) activations of the concept examples (flattened).
        random: (n_r, D) activations of the random counter-examples.
        alpha: L2 regularisation strength (the authors' default, 0.01).
        seed: seed of the held-out split.
        max_iter: L-BFGS iterations at most.

    Raises:
        ValueError: sets of different widths, fewer than 2 examples in a set, or alpha <= 0.
    """
    if concept.dim() != 2 or random.dim() != 2 or concept.shape[1] != random.shape[1]:
        raise ValueError(f"concept and random must be (n, D) activations of one layer, got {tuple(concept.shape)} and {tuple(random.shape)}")
    if concept.shape[0] < 2 or random.shape[0] < 2:
        raise ValueError(f"concept and random sets must hold at least 2 examples each, got {concept.shape[0]} and {random.shape[0]}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    generator = torch.Generator().manual_seed(seed)
    c_train, c_test = _split(concept.shape[0], generator)
    r_train, r_test = _split(random.shape[0], generator)
    features = torch.cat([concept[c_train], random[r_train]]).double().cpu()  # (n, D)
    signs = torch.cat([torch.ones(len(c_train)), -torch.ones(len(r_train))]).double()  # (n,)
    w, b = _fit(features, signs, alpha, max_iter)
    accuracy = float("nan")
    if len(c_test) and len(r_test):
        test = torch.cat([concept[c_test], random[r_test]]).double().cpu()
        test_signs = torch.cat([torch.ones(len(c_test)), -torch.ones(len(r_test))]).double()
        accuracy = float(((test @ w + b) * test_signs > 0).double().mean())
    norm = w.norm()
    vector = w / norm if norm > 0 else w
    return CAV(vector.to(dtype=concept.dtype, device=concept.device), accuracy)
