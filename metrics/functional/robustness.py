"""Explanation robustness: how much Φ moves when the input moves a little.

Compare the per-pixel map of Φ(x) with that of Φ(x'), both summed |Φ| over channels (the
protocol of Ghorbani, Abid & Zou, AAAI 2019, and Chen, Wu, Rastogi, Liang & Jha, NeurIPS 2019),
by top-k intersection, Spearman's ρ, Kendall's τ and cosine similarity, where x' is

- "noise": a uniform random point of the L∞ ball of radius ε around x, clipped to [0, 1];
- "pgd": a PGD adversarial example on the classifier (Madry et al., ICLR 2018), from x (no
  random start, so the perturbation is deterministic);
- "topk_attack": Ghorbani et al.'s top-k attack on the explanation itself
  (:class:`attacks.TopKExplanationAttack`): signed steps that push attribution mass out of the
  clean top-k pixels; the iterate kept is the label-preserving one with the lowest value of the
  reported similarity (or of a chosen ``criterion``), and examples the model misclassifies
  (prediction ≠ the given ``target``) are not attacked and score NaN, as in Ghorbani et al.'s and
  Chen et al.'s code.

Higher is more robust for all four similarities.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from attacks import PGD, TopKExplanationAttack, default_topk
from attacks.explanation import ExplanationAttackResult
from attributions import AttributionMethod, pixel_map
from common.example_noise import example_ids, example_noise
from common.similarity import cosine, kendall, spearman, topk_intersection
from metrics.functional.stacking import explain_stacked, resolve_pass_budget

Perturbation = Literal["noise", "pgd", "topk_attack"]
PERTURBATIONS: tuple[str, ...] = ("noise", "pgd", "topk_attack")
Similarity = Literal["topk_intersection", "spearman", "kendall", "cosine"]
SIMILARITIES: tuple[str, ...] = ("topk_intersection", "spearman", "kendall", "cosine")

_NOISE_STREAM = 1


def perturb(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    method: AttributionMethod,
    perturbation: Perturbation = "noise",
    eps: float = 0.1,
    steps: int | None = None,
    step_size: float | None = None,
    k: int | None = None,
    softplus_beta: float = 10.0,
    seed: int = 0,
    ids: Tensor | None = None,
    k_attack: int | None = None,
    k_score: int | None = None,
    criterion: Similarity = "topk_intersection",
    stop_at_label_flip: bool = False,
) -> Tensor:
    """The perturbed inputs x' (B, C, H, W) of one kind, in the L∞ ball of radius ``eps`` ∩ [0, 1].

    A top-k attack returns examples it skips (misclassified: prediction ≠ ``target``) unchanged;
    :func:`topk_attack` also says which they are.

    Args:
        model: the classifier.
        x: (B, C, H, W) clean inputs in [0, 1].
        target: (B,) the explained classes (PGD attacks them as labels; the top-k attack
            attacks their explanation).
        method: the attribution method (only the top-k attack uses it).
        perturbation: "noise", "pgd" or "topk_attack".
        eps: L∞ radius.
        steps: attack steps (None: 10 for PGD, 100 for the top-k attack).
        step_size: attack step (None: 2.5 ε / steps for PGD, 0.01 for the top-k attack).
        k: shorthand for ``k_attack`` and ``k_score`` of the top-k attack.
        softplus_beta: β of the softplus the top-k attack differentiates through.
        seed: seed of the uniform noise.
        ids: (B,) example identities for the noise (see :mod:`common.example_noise`).
        k_attack: top set the top-k attack pushes mass out of (None: 100 per 28 × 28 pixels).
        k_score: k of its top-k intersection criterion (None: 100 per 28 × 28 pixels).
        criterion: the similarity that selects the top-k attack's iterate.
        stop_at_label_flip: the top-k attack's older rule (stop at the first label flip).
    """
    if perturbation == "noise":
        ids = example_ids(x.shape[0], ids, x.device)
        u = example_noise(tuple(x.shape[1:]), ids, seed, _NOISE_STREAM, dtype=x.dtype)
        return (x + (2.0 * u - 1.0) * eps).clamp(0.0, 1.0)
    if perturbation == "pgd":
        n = 10 if steps is None else steps
        alpha = 2.5 * eps / max(n, 1) if step_size is None else step_size
        return PGD(eps=eps, step_size=alpha, steps=n, random_start=False)(model, x, target)
    if perturbation == "topk_attack":
        return topk_attack(
            model, x, target, method, (criterion,), eps, steps, step_size, k, k_attack, k_score,
            stop_at_label_flip, softplus_beta,
        ).x_adv
    raise ValueError(f"perturbation must be one of {PERTURBATIONS}, got {perturbation!r}")


def topk_attack(
    model: nn.Module,
    x: Tensor,
    target: Tensor | None,
    method: AttributionMethod,
    criteria: tuple[str, ...] = ("topk_intersection",),
    eps: float = 0.1,
    steps: int | None = None,
    step_size: float | None = None,
    k: int | None = None,
    k_attack: int | None = None,
    k_score: int | None = None,
    stop_at_label_flip: bool = False,
    softplus_beta: float = 10.0,
) -> ExplanationAttackResult:
    """Run :class:`attacks.TopKExplanationAttack` once, tracking every criterion of ``criteria``.

    Defaults: 100 steps of 0.01 (Ghorbani et al., Chen et al.); ``k`` is shorthand for both
    ``k_attack`` and ``k_score``. ``target`` are the labels (misclassified examples skipped) or
    None (the predicted class, nothing skipped).
    """
    attack = TopKExplanationAttack(
        eps=eps,
        step_size=0.01 if step_size is None else step_size,
        steps=100 if steps is None else steps,
        k_attack=k_attack,
        k_score=k_score,
        k=k,
        criteria=criteria,
        stop_at_label_flip=stop_at_label_flip,
        softplus_beta=softplus_beta,
    )
    return attack.attack(model, x, method, target)


def map_similarity(maps: Tensor, perturbed_maps: Tensor, similarity: Similarity, k: int | None = None) -> Tensor:
    """One similarity between per-pixel maps (B, H, W): (B,). ``k`` defaults to 100 per 28 × 28."""
    if similarity == "topk_intersection":
        k = default_topk(maps.shape[-2], maps.shape[-1]) if k is None else k
        return topk_intersection(maps, perturbed_maps, k)
    if similarity == "spearman":
        return spearman(maps, perturbed_maps)
    if similarity == "kendall":
        return kendall(maps, perturbed_maps)
    if similarity == "cosine":
        return cosine(maps, perturbed_maps)
    raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")


def explanation_robustness(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    method: AttributionMethod,
    perturbation: Perturbation = "noise",
    similarities: tuple[str, ...] = SIMILARITIES,
    attribution: Tensor | None = None,
    pass_budget: int | None = None,
    **perturb_options: object,
) -> dict[str, Tensor]:
    """Similarities between the maps of Φ(x) and Φ(x') for one kind of x': {name: (B,)}.

    Under the top-k attack each similarity is scored at the iterate it selects itself (one
    trajectory, tracked for all of them), and examples the attack skips score NaN.

    Args:
        model, x, target, method: as in :func:`perturb`.
        perturbation: "noise", "pgd" or "topk_attack".
        similarities: which of "topk_intersection", "spearman", "kendall", "cosine".
        attribution: Φ(x) when already computed (shared between metrics; not used by the top-k
            attack, which explains x itself).
        pass_budget: M, images per attribution call: Φ(x) and Φ(x') are explained in one
            stacked call of 2B images when M >= 2B (None: the enclosing
            :func:`~metrics.functional.stacking.pass_budget`, else its default).
        **perturb_options: ``eps``, ``steps``, ``step_size``, ``k``, ``softplus_beta``, ``seed``,
            ``ids`` of :func:`perturb` (``k`` is also the k of the top-k intersection), and for
            the top-k attack ``k_attack``, ``k_score``, ``stop_at_label_flip``.
    """
    for name in similarities:
        if name not in SIMILARITIES:
            raise ValueError(f"similarities must be among {SIMILARITIES}, got {name!r}")
    if perturbation == "topk_attack":
        options = {key: value for key, value in perturb_options.items() if key not in ("seed", "ids")}
        result = topk_attack(model, x, target, method, tuple(similarities), **options)  # type: ignore[arg-type]
        return {name: result.selections[name].score for name in similarities}
    images = resolve_pass_budget(pass_budget, x)
    x_adv = perturb(model, x, target, method, perturbation, **perturb_options)  # type: ignore[arg-type]
    if attribution is None:  # Φ(x) and Φ(x') stacked
        both_targets = None if target is None else torch.cat([target, target])
        phi, phi_adv = explain_stacked(model, torch.cat([x, x_adv]), both_targets, method, images).split(x.shape[0])
    else:
        phi, phi_adv = attribution, explain_stacked(model, x_adv, target, method, images)
    maps, maps_adv = pixel_map(phi), pixel_map(phi_adv)  # (B, H, W)
    k = perturb_options.get("k")
    return {name: map_similarity(maps, maps_adv, name, k) for name in similarities}  # type: ignore[arg-type]
