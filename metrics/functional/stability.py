"""Robustness of the explanation as a ratio to what moved: relative stability, continuity, consistency.

Relative stability (Agarwal, Johnson, Pawelczyk, Krishna, Saxena, Zitnik & Lakkaraju,
"Rethinking Stability for Attribution-based Explanations", ICLR PAIR2Struct workshop 2022).
Over n perturbations x' = x + δ_j (δ_j uniform in the L∞ ball of radius r, not clipped) that keep
the model's predicted class, with elementwise relative changes Δ_rel(a, a') = (a − a') / a
(a zero entry divided by ε_min instead) and L2 norms over all elements:

    RIS(x) = max_{x'} ‖Δ_rel(Φ(x), Φ(x'))‖ / max(‖Δ_rel(x, x')‖, ε_min)        (input)
    ROS(x) = max_{x'} ‖Δ_rel(Φ(x), Φ(x'))‖ / max(‖h(x) − h(x')‖, ε_min)        (output: logits h)
    RRS(x) = max_{x'} ‖Δ_rel(Φ(x), Φ(x'))‖ / max(‖Δ_rel(L(x), L(x'))‖, ε_min)  (representation)

L(x) is the output of a named layer, by default the input of the model's last ``nn.Linear``
(the penultimate representation). Lower is more stable. The three share the perturbations and
Φ(x') (:func:`relative_stability` computes any of them in one pass: n attribution calls and n
forward passes). An example whose every x' changes the prediction scores NaN. On images with
exact zeros (an MNIST background) the ε_min division makes those entries dominate Δ_rel(x, x')
and Δ_rel(Φ(x), Φ(x')): the paper's definition, kept, so compare these scores between methods
or models on the same data, not as absolute numbers.
Where Quantus 0.6 differs: its default noise is one-sided, U[0.02, 0.2] added to every element
(here symmetric, radius 0.05 by default); it adds ε_min to a zero denominator rather than taking
max(·, ε_min) (the same unless the norm is below ε_min); and it marks a label-changing x' NaN
then takes ``np.max``, so a single label change makes the whole example NaN — here such x' are
left out of the maximum, as the paper's constraint says.

Continuity (Montavon, Samek & Müller, "Methods for interpreting and understanding deep neural
networks", Digital Signal Processing 2018): an explanation should not jump when the input moves
smoothly. Along horizontal translations x'_s of x (the vacated columns 0 by default), following
Quantus's schedule — n steps (default W) of dx = ⌊(2W + 1)/n⌋ pixels from −W + dx to −W + n·dx, the
unshifted step left out —

    C(x) = max_s ‖|Φ̂(x)| − |Φ̂(x'_s)|‖₁ / (‖x − x'_s‖₂ + 1e-9)

where Φ̂ is Φ divided by its own largest |Φ| (``normalise``; Quantus divides by the largest |Φ|
of the whole batch, so its scores depend on the batch; and its "black" fill is the image's own
minimum, ``fill="min"`` here, where the default fills with 0). Lower is more continuous. One
attribution call per step.

Consistency (Dasgupta, Frost & Moshkovitz, "Framework for Evaluating Faithfulness of Local
Explanations", ICML 2022): the probability that two inputs with the same (discretised)
explanation get the same prediction,

    Cons(x_i) = #{j ≠ i : e_j = e_i, ŷ_j = ŷ_i} / #{j ≠ i : e_j = e_i}

Discretisation e: the k pixels of largest |Σ_c Φ_c| (a set) with the sign of Σ_c Φ_c at each.
Higher is more consistent; NaN where no other example shares the explanation (the conditional
probability is undefined). The score depends on the set the example is pooled with:
:func:`consistency` pools one batch; a metric over a dataset gathers :func:`explanation_codes`
and the predictions first and calls :func:`consistency_from_codes` once. Quantus 0.6 pools one
batch, scores 0 (not undefined) without a partner, and its default discretisation ``top_n_sign``
takes the signs of the *first* five entries of the flattened map (in index order, not by
relevance; after its default ``abs=True`` they are all non-negative), so nearly every map gets
the same code.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from attributions import AttributionMethod, pixel_map
from attributions.base import normal_tensor
from common.example_noise import example_ids, example_noise
from common.modes import module_mode
from metrics.functional.common import check_perturbations, check_positive_int

_RELATIVE_STABILITY_STREAM = 30
STABILITY_KINDS: tuple[str, ...] = ("input", "output", "representation")
FILLS: tuple[str, ...] = ("zero", "min")


def relative_change(a: Tensor, a_moved: Tensor, eps_min: float) -> Tensor:
    """‖(a − a') / a‖₂ per example (B,), a zero entry of a replaced by ε_min; float64."""
    a, a_moved = a.flatten(1).double(), a_moved.flatten(1).double()
    denominator = torch.where(a == 0, torch.full_like(a, eps_min), a)
    return ((a - a_moved) / denominator).norm(dim=1)


def penultimate_layer(model: nn.Module) -> str:
    """Name of the model's last ``nn.Linear`` (its input is the penultimate representation)."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise ValueError("relative representation stability: the model has no nn.Linear; name a layer with layer=")
    return names[-1]


@contextmanager
def _capture(model: nn.Module, layer: str | None, store: list[Tensor]) -> Iterator[None]:
    """Append the named layer's output (or the last Linear's input when ``layer`` is None) to ``store``."""
    modules = dict(model.named_modules())
    if layer is None:
        module = modules[penultimate_layer(model)]
        handle = module.register_forward_pre_hook(lambda _m, args: store.append(args[0].detach()))
    else:
        if layer not in modules or layer == "":
            raise ValueError(f"layer must name a submodule of the model, got {layer!r}")
        handle = modules[layer].register_forward_hook(lambda _m, _args, out: store.append(out.detach()))
    try:
        yield
    finally:
        handle.remove()


def _forward(model: nn.Module, x: Tensor, layer: str | None, want_representation: bool) -> tuple[Tensor, Tensor | None]:
    """Logits (B, K) and, when wanted, the representation (B, ...), eval mode, no graph."""
    store: list[Tensor] = []
    with torch.no_grad(), module_mode(model, "eval"):
        if want_representation:
            with _capture(model, layer, store):
                logits = model(normal_tensor(x))
        else:
            logits = model(normal_tensor(x))
    return logits, (store[0] if store else None)


def relative_stability(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    method: AttributionMethod,
    *,
    kinds: Sequence[str] = STABILITY_KINDS,
    attribution: Tensor | None = None,
    radius: float = 0.05,
    n_samples: int = 20,
    layer: str | None = None,
    eps_min: float = 1e-6,
    perturbations: Tensor | None = None,
    seed: int = 0,
    ids: Tensor | None = None,
) -> dict[str, Tensor]:
    """RIS, ROS and/or RRS per example from one set of perturbations: {kind: (B,)}.

    Args:
        model: the classifier.
        x: (B, C, H, W) inputs.
        target: (B,) explained classes.
        method: the attribution method.
        kinds: any of "input", "output", "representation".
        attribution: Φ(x) when already computed.
        radius: r, the L∞ radius of δ.
        n_samples: n.
        layer: the representation's layer (its output); None: the input of the last nn.Linear.
        eps_min: ε_min of the paper (zero entries and the denominator's floor).
        perturbations: fixed δ (n_samples, B, C, H, W) instead of random ones.
        seed: seed of the random δ.
        ids: (B,) example identities for the noise.

    Returns:
        {kind: (B,) float64}, lower is more stable; NaN where every x' changed the prediction.
    """
    for kind in kinds:
        if kind not in STABILITY_KINDS:
            raise ValueError(f"kinds must be among {STABILITY_KINDS}, got {kind!r}")
    n_samples = check_positive_int("n_samples", n_samples)
    if isinstance(radius, bool) or not float(radius) > 0:
        raise ValueError(f"radius must be a number > 0, got {radius!r}")
    if isinstance(eps_min, bool) or not float(eps_min) > 0:
        raise ValueError(f"eps_min must be a number > 0, got {eps_min!r}")
    check_perturbations(perturbations, n_samples, x)
    want_rep = "representation" in kinds
    ids = example_ids(x.shape[0], ids, x.device)
    phi = method(model, x, target) if attribution is None else attribution
    logits, rep = _forward(model, x, layer, want_rep)  # (B, K), (B, ...)
    label = logits.argmax(dim=1)
    ratios: dict[str, list[Tensor]] = {kind: [] for kind in kinds}
    kept = []
    for j in range(n_samples):
        if perturbations is None:
            u = example_noise(tuple(x.shape[1:]), ids, seed, _RELATIVE_STABILITY_STREAM, j, dtype=x.dtype)
            moved = x + (2.0 * u - 1.0) * radius  # (B, C, H, W)
        else:
            moved = x + perturbations[j]
        numerator = relative_change(phi, method(model, moved, target), eps_min)  # (B,)
        logits_moved, rep_moved = _forward(model, moved, layer, want_rep)
        kept.append(logits_moved.argmax(dim=1) == label)
        for kind in kinds:
            if kind == "input":
                denominator = relative_change(x, moved, eps_min)
            elif kind == "output":
                denominator = (logits.double() - logits_moved.double()).norm(dim=1)
            else:
                denominator = relative_change(rep, rep_moved, eps_min)  # type: ignore[arg-type]
            ratios[kind].append(numerator / denominator.clamp_min(eps_min))
    valid = torch.stack(kept, dim=1)  # (B, n)
    out = {}
    for kind in kinds:
        values = torch.stack(ratios[kind], dim=1).masked_fill(~valid, -torch.inf)  # (B, n)
        best = values.max(dim=1).values
        out[kind] = torch.where(valid.any(dim=1), best, torch.full_like(best, float("nan")))
    return out


def relative_input_stability(model: nn.Module, x: Tensor, target: Tensor, method: AttributionMethod, **options: object) -> Tensor:
    """RIS per example (B,); options as :func:`relative_stability`."""
    return relative_stability(model, x, target, method, kinds=("input",), **options)["input"]  # type: ignore[arg-type]


def relative_output_stability(model: nn.Module, x: Tensor, target: Tensor, method: AttributionMethod, **options: object) -> Tensor:
    """ROS per example (B,); options as :func:`relative_stability`."""
    return relative_stability(model, x, target, method, kinds=("output",), **options)["output"]  # type: ignore[arg-type]


def relative_representation_stability(
    model: nn.Module, x: Tensor, target: Tensor, method: AttributionMethod, **options: object
) -> Tensor:
    """RRS per example (B,); options as :func:`relative_stability`."""
    return relative_stability(model, x, target, method, kinds=("representation",), **options)["representation"]  # type: ignore[arg-type]


def translation_shifts(width: int, n_steps: int) -> list[int]:
    """Horizontal shifts of the continuity test: −W + s·⌊(2W + 1)/n⌋ for s = 1..n, without 0."""
    n_steps = check_positive_int("n_steps", n_steps)
    dx = (2 * width + 1) // n_steps
    if dx < 1:
        raise ValueError(f"n_steps must be <= 2·W + 1 = {2 * width + 1}, got {n_steps}")
    return [s for s in (-width + dx * step for step in range(1, n_steps + 1)) if s != 0]


def translate(x: Tensor, shift: int, fill: str = "zero") -> Tensor:
    """x moved ``shift`` pixels right (left when negative): (B, C, H, W).

    The vacated columns are 0 (``fill="zero"``) or the image's own minimum over all channels
    (``"min"``, what Quantus 0.6 calls "black").
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    if fill == "zero":
        out = torch.zeros_like(x)
    else:
        out = x.flatten(1).min(dim=1).values.view(-1, 1, 1, 1).expand_as(x).clone()
    w = x.shape[-1]
    if abs(shift) >= w:
        return out
    if shift >= 0:
        out[..., shift:] = x[..., : w - shift]
    else:
        out[..., : w + shift] = x[..., -shift:]
    return out


def _normalised_abs(phi: Tensor, normalise: bool) -> Tensor:
    a = phi.flatten(1).double().abs()  # (B, D)
    if not normalise:
        return a
    peak = a.max(dim=1, keepdim=True).values
    return torch.where(peak > 0, a / peak.clamp_min(torch.finfo(a.dtype).tiny), a)


def continuity(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    method: AttributionMethod,
    *,
    attribution: Tensor | None = None,
    n_steps: int | None = None,
    normalise: bool = True,
    fill: str = "zero",
) -> Tensor:
    """max over translations of ‖|Φ̂(x)| − |Φ̂(x')|‖₁ / ‖x − x'‖₂ per example (B,); lower is better.

    Args:
        model: the classifier.
        x: (B, C, H, W) inputs.
        target: (B,) explained classes (the same for every translated input).
        method: the attribution method.
        attribution: Φ(x) when already computed.
        n_steps: n, the translations of Quantus's schedule; None: W (Quantus's 28 on 28 × 28,
            a shift every 2 columns).
        normalise: divide each map by its own largest |Φ|.
        fill: the vacated columns: "zero" (black in [0, 1] images) or "min" (the image's minimum,
            Quantus's "black").

    Returns:
        (B,) float64 scores.
    """
    shifts = translation_shifts(x.shape[-1], x.shape[-1] if n_steps is None else n_steps)
    phi = _normalised_abs(method(model, x, target) if attribution is None else attribution, normalise)
    best = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for shift in shifts:
        moved = translate(x, shift, fill)
        change = (phi - _normalised_abs(method(model, moved, target), normalise)).abs().sum(dim=1)  # (B,)
        distance = (x - moved).flatten(1).double().norm(dim=1) + 1e-9
        best = torch.maximum(best, change / distance)
    return best


def explanation_codes(attribution: Tensor, k: int = 5) -> Tensor:
    """Discretised explanations (B, k): the k most relevant pixels, as signed (index + 1), sorted.

    Relevance is |Σ_c Φ_c|; ties go to the lower pixel index. Two examples have the same
    explanation exactly when their rows are equal.
    """
    relevance = pixel_map(attribution, "sum").flatten(1)  # (B, P)
    k = check_positive_int("k", k)
    if k > relevance.shape[1]:
        raise ValueError(f"k must be <= the number of pixels {relevance.shape[1]}, got {k}")
    # A stable descending sort puts the lower index first among equal |relevance|.
    top = relevance.abs().argsort(dim=1, descending=True, stable=True)[:, :k]  # (B, k)
    signs = torch.sign(relevance.gather(1, top)).long()
    return ((top + 1) * torch.where(signs == 0, 1, signs)).sort(dim=1).values


def consistency_from_codes(codes: Tensor, predictions: Tensor) -> Tensor:
    """Share of the other examples with the same code that have the same prediction (B,); NaN alone.

    Args:
        codes: (N, k) discretised explanations (:func:`explanation_codes`), pooled set.
        predictions: (N,) predicted classes.
    """
    if codes.dim() != 2 or predictions.shape != (codes.shape[0],):
        raise ValueError(f"codes must be (N, k) and predictions (N,), got {tuple(codes.shape)} and {tuple(predictions.shape)}")
    n = codes.shape[0]
    same_code = (codes.unsqueeze(0) == codes.unsqueeze(1)).all(dim=2)  # (N, N)
    same_code &= ~torch.eye(n, dtype=torch.bool, device=codes.device)
    same_pred = predictions.unsqueeze(0) == predictions.unsqueeze(1)
    partners = same_code.sum(dim=1).double()
    agree = (same_code & same_pred).sum(dim=1).double()
    return torch.where(partners > 0, agree / partners.clamp_min(1.0), torch.full_like(partners, float("nan")))


def consistency(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    attribution: Tensor,
    *,
    k: int = 5,
) -> Tensor:
    """Consistency within the batch (B,); higher is better, NaN without a partner.

    Args:
        model: the classifier (its predicted classes are compared).
        x: (B, C, H, W) inputs.
        target: (B,) explained classes (the attribution's; not otherwise used).
        attribution: Φ(x) (B, C, H, W).
        k: pixels in the discretised explanation.
    """
    logits, _ = _forward(model, x, None, False)
    return consistency_from_codes(explanation_codes(attribution, k), logits.argmax(dim=1))
