"""Axiomatic properties: does the explanation obey what an attribution is supposed to satisfy?

Completeness (Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017):
the attributions add up to the change of the output between a baseline x̄ and x,

    gap(x) = | Σ_i Φ_i(x) − (f_t(x) − f_t(x̄)) |          (optionally ÷ |f_t(x) − f_t(x̄)|)

with f_t the target's logit. Integrated gradients from x̄ satisfies it up to its quadrature
error; saliency does not on a nonlinear model. Convention: a continuous gap (lower is better;
``relative`` divides by |Δf|, 0/0 = 0), where Quantus 0.6 returns the boolean
``Σ Φ == Δf`` — an exact float equality that almost never holds, taken after dividing Φ by the
batch's largest |Φ| (its default ``normalise=True``), so even exact attributions fail.

Non-sensitivity (Nguyen & Martínez, "On quantitative aspects of model interpretability",
2020): a pixel the model ignores should get no relevance, and a pixel with no relevance should
not move the output. Each pixel i (all its channels) is set to the baseline alone; the score
counts the pixels where exactly one of the two holds,

    NS(x) = #{i : [r_i / max_j r_j < ε_Φ]  XOR  [|f_t(x) − f_t(x with pixel i removed)| < ε_f]}

with r = Σ_c |Φ_c| and f_t the target's logit (``output="probability"``: its softmax
probability, Quantus's default here); lower is better, 0 = both properties hold everywhere.
Quantus 0.6 uses one ε for both tests and divides Φ by the batch's largest |Φ|, so an example's score depends on its
batch; here the relevance is relative to the example's own largest value, and the two
thresholds are separate options (both 1e-5 by default, Quantus's value). One forward pass per
pixel per example, batched, except for pixels already equal to the baseline (the image does not
change, so Δf = 0 without a pass: most of an MNIST digit's background).

Input invariance (Kindermans, Hooker, Adebayo, Alber, Schütt, Dähne, Erhan & Kim, "The
(Un)reliability of Saliency Methods", 2019): shift the input by a constant, x̃ = x + c, and
build a second model f̃ = f ∘ (· − c) by absorbing the shift into the first Linear/Conv2d
layer's bias, b̃ = b − W δ (δ = the shift as that layer sees it, e.g. c/σ after the
normalisation); the two models compute the same function of the unshifted image, so an
input-invariant method gives Φ_f̃(x̃) = Φ_f(x). Score:

    II(x) = max_i |Φ_f(x)_i − Φ_f̃(x̃)_i| / max_i |Φ_f(x)_i|      (0/0 = 0)

(lower is better, 0 = invariant). The caller's model is never modified: f̃ is a deep copy. A
zero-padded convolution would see the padding unshifted, so its copy pads with δ instead (the
border then matches exactly); Quantus 0.6 keeps the zero padding (and sets the bias from the
smallest output of the layer on a constant input, a border value when there is padding), only
shifts a first module that is a convolution, returns a boolean ``allclose(atol=1e-4)``, and its
shifted input leaves the first element of every image unshifted (its index handling), so x̃ ≠
x + c and even saliency fails its test.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attributions import AttributionMethod, pixel_map
from attributions.base import normal_tensor
from common.modes import module_mode
from metrics.functional.common import target_scores
from metrics.functional.faithfulness import Removal, removal_baseline
from metrics.functional.stacking import resolve_pass_budget


def _check_nonnegative(name: str, value: float) -> float:
    if isinstance(value, bool) or not float(value) >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def completeness(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    attribution: Tensor,
    *,
    baseline: Removal = "zero",
    relative: bool = False,
) -> Tensor:
    """|Σ Φ − (f_t(x) − f_t(x̄))| per example (B,), optionally relative to |f_t(x) − f_t(x̄)|.

    Args:
        model: the classifier.
        x: (B, C, H, W) inputs.
        target: (B,) explained classes.
        attribution: Φ(x) (B, C, H, W).
        baseline: x̄: "zero", the image's per-channel "mean", or a "blur"red x (match the
            attribution method's own baseline).
        relative: divide the gap by |Δf| (0 when both are 0).

    Returns:
        (B,) float64 gaps; lower is better.
    """
    reference = removal_baseline(x, baseline)
    delta_f = target_scores(model, x, target).double() - target_scores(model, reference, target).double()  # (B,)
    gap = (attribution.flatten(1).double().sum(dim=1) - delta_f).abs()
    if not relative:
        return gap
    scale = delta_f.abs()
    return torch.where(scale > 0, gap / scale.clamp_min(torch.finfo(scale.dtype).tiny), torch.where(gap > 0, torch.inf, 0.0))


def non_sensitivity(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    attribution: Tensor,
    *,
    baseline: Removal = "zero",
    attribution_eps: float = 1e-5,
    output_eps: float = 1e-5,
    output: str = "logit",
    pass_budget: int | None = None,
) -> Tensor:
    """Pixels where "no relevance" and "no effect on the logit" disagree, per example (B,).

    Args:
        model: the classifier.
        x: (B, C, H, W) inputs.
        target: (B,) explained classes.
        attribution: Φ(x) (B, C, H, W).
        baseline: what a removed pixel becomes ("zero", "mean", "blur").
        attribution_eps: ε_Φ, on r_i / max_j r_j.
        output_eps: ε_f, on the change of the target's output.
        output: "logit" or "probability" (softmax; Quantus's default for this metric).
        pass_budget: M, images per forward pass (speed and memory only; scores do not depend on
            it; None: the enclosing :func:`~metrics.functional.stacking.pass_budget`, else its
            default).

    Returns:
        (B,) float64 counts in [0, H·W]; lower is better.
    """
    attribution_eps = _check_nonnegative("attribution_eps", attribution_eps)
    output_eps = _check_nonnegative("output_eps", output_eps)
    if output not in ("logit", "probability"):
        raise ValueError(f"output must be one of ('logit', 'probability'), got {output!r}")
    rows_per_pass = resolve_pass_budget(pass_budget, x)
    b, c, h, w = x.shape
    p = h * w
    r = pixel_map(attribution, "abs_sum").flatten(1).double()  # (B, P)
    relative = r / r.max(dim=1, keepdim=True).values.clamp_min(torch.finfo(r.dtype).tiny)
    no_relevance = relative < attribution_eps  # (B, P)
    filler = removal_baseline(x, baseline).flatten(2)  # (B, C, P)
    flat = x.flatten(2)  # (B, C, P)
    clean = target_scores(model, x, target, output).double()  # (B,)
    # A pixel already equal to the baseline leaves the image unchanged: Δf = 0 without a pass.
    no_effect = torch.full((b, p), 0.0 < output_eps, dtype=torch.bool, device=x.device)
    examples, pixels = (flat != filler).any(dim=1).nonzero(as_tuple=True)  # (M,), (M,) the pairs to run
    for start in range(0, examples.numel(), int(rows_per_pass)):
        ex, px = examples[start : start + rows_per_pass], pixels[start : start + rows_per_pass]
        rows = torch.arange(ex.numel(), device=x.device)
        images = flat[ex].clone()  # (m, C, P)
        images[rows, :, px] = filler[ex, :, px]
        moved = target_scores(model, images.view(-1, c, h, w), target[ex], output).double()  # (m,)
        no_effect[ex, px] = (moved - clean[ex]).abs() < output_eps
    return (no_relevance ^ no_effect).sum(dim=1).double()


class _ShiftPaddedConv2d(nn.Module):
    """A zero-padded Conv2d whose padding carries the input shift δ: the copy's border matches."""

    def __init__(self, conv: nn.Conv2d, delta: Tensor) -> None:
        super().__init__()
        ph, pw = conv.padding  # type: ignore[misc]
        self.pads = (pw, pw, ph, ph)
        conv.padding = (0, 0)
        self.conv = conv
        self.register_buffer("delta", delta.view(1, -1, 1, 1))

    def forward(self, z: Tensor) -> Tensor:
        ones = torch.ones_like(z[:1, :1])  # (1, 1, H, W)
        border = 1.0 - F.pad(ones, self.pads)  # 1 on the padding ring
        return self.conv(F.pad(z, self.pads) + self.delta * border)


def _first_affine_layer(model: nn.Module, x: Tensor, shift: float) -> tuple[str, nn.Module, Tensor]:
    """The first Linear/Conv2d ``model`` runs on ``x``, and the shift δ of its input under x + shift."""
    seen: dict[str, list[Tensor]] = {}
    order: list[str] = []
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):

            def record(mod: nn.Module, args: tuple[Tensor, ...], name: str = name) -> None:
                if name not in seen:
                    order.append(name)
                seen.setdefault(name, []).append(args[0].detach())

            hooks.append(module.register_forward_pre_hook(record))
    try:
        with torch.no_grad(), module_mode(model, "eval"):
            model(normal_tensor(x[:1]))
            model(normal_tensor(x[:1]) + shift)
    finally:
        for hook in hooks:
            hook.remove()
    if not order:
        raise ValueError("input invariance needs a model whose first weighted layer is an nn.Linear or nn.Conv2d; found none")
    name = order[0]
    clean, shifted = seen[name][0], seen[name][-1]
    delta = shifted - clean  # (1, ...) the shift at that layer's input
    module = dict(model.named_modules())[name]
    if isinstance(module, nn.Conv2d):
        per_channel = delta.mean(dim=(0, 2, 3))  # (C,)
        tolerance = 1e-4 * max(1.0, float(per_channel.abs().max()))
        if not torch.allclose(delta, per_channel.view(1, -1, 1, 1).expand_as(delta), atol=tolerance):
            raise ValueError(
                f"input invariance: the input shift reaches the first convolution {name!r} as a non-constant "
                "map, so no bias can absorb it (is there a nonlinear layer before it?)"
            )
        return name, module, per_channel
    return name, module, delta.flatten()


def shifted_model(model: nn.Module, x: Tensor, shift: float) -> nn.Module:
    """f̃ with f̃(x + shift) = f(x): a deep copy whose first Linear/Conv2d bias absorbs the shift.

    Args:
        model: the classifier (left untouched).
        x: (B, C, H, W) example inputs (one is run to locate the first layer and its input shift).
        shift: c, added to every input element.
    """
    with torch.inference_mode(False):  # the copy's parameters must stay usable by autograd
        return _shifted_copy(model, x.clone() if x.is_inference() else x, shift)


def _shifted_copy(model: nn.Module, x: Tensor, shift: float) -> nn.Module:
    copy_model = copy.deepcopy(model)
    name, module, delta = _first_affine_layer(copy_model, x, shift)
    delta = delta.clone()
    with torch.no_grad():
        if isinstance(module, nn.Linear):
            absorbed = module.weight @ delta.to(module.weight.dtype)  # (out,)
        else:
            kh = module.dilation[0] * (module.kernel_size[0] - 1) + 1
            kw = module.dilation[1] * (module.kernel_size[1] - 1) + 1
            constant = delta.to(module.weight.dtype).view(1, -1, 1, 1).expand(1, delta.numel(), kh, kw)
            absorbed = F.conv2d(constant, module.weight, None, 1, 0, module.dilation, module.groups).flatten()  # (out,)
        if module.bias is None:
            module.bias = nn.Parameter(torch.zeros_like(absorbed))
        module.bias -= absorbed
    if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros":
        if isinstance(module.padding, str):
            if module.padding == "same":
                raise ValueError(f"input invariance: convolution {name!r} with padding='same' is not supported")
        elif any(module.padding):
            parent_name, _, child = name.rpartition(".")
            parent = copy_model.get_submodule(parent_name) if parent_name else copy_model
            setattr(parent, child, _ShiftPaddedConv2d(module, delta))
    return copy_model


def input_invariance(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    method: AttributionMethod,
    *,
    attribution: Tensor | None = None,
    shift: float = -1.0,
) -> Tensor:
    """max |Φ_f(x) − Φ_f̃(x + c)| / max |Φ_f(x)| per example (B,); 0 for an input-invariant method.

    Args:
        model: the classifier (never modified; the shifted model is a copy).
        x: (B, C, H, W) inputs.
        target: (B,) explained classes.
        method: the attribution method.
        attribution: Φ_f(x) when already computed.
        shift: c (Kindermans et al. and Quantus: −1, moving [0, 1] images to [−1, 0]).

    Returns:
        (B,) float64 relative differences; lower is better.
    """
    if isinstance(shift, bool) or not isinstance(shift, (int, float)):
        raise ValueError(f"shift must be a number, got {shift!r}")
    phi = method(model, x, target) if attribution is None else attribution
    tilde = shifted_model(model, x, float(shift))
    phi_shifted = method(tilde, x + shift, target)
    diff = (phi - phi_shifted).flatten(1).abs().max(dim=1).values.double()  # (B,)
    scale = phi.flatten(1).abs().max(dim=1).values.double()
    ratio = diff / scale.clamp_min(torch.finfo(scale.dtype).tiny)
    return torch.where(scale > 0, ratio, torch.where(diff > 0, torch.inf, 0.0).double())
