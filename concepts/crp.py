"""Concept relevance propagation (Achtibat, Dreyer, Eisenbraun, Bosse, Wiegand, Samek &
Lapuschkin, "From Attribution Maps to Human-Understandable Explanations through Concept
Relevance Propagation", Nature Machine Intelligence 2023; arXiv 2206.03208, 2022).

LRP (Bach et al., PLoS ONE 2015) through zennit, the LRP authors' library, with a composite of
rules (EpsilonPlusFlat by default: flat rule on the first linear layer, z⁺ on convolutions, ε on
dense layers, BatchNorm merged into the preceding layer by a canonizer). The relevance R_l at a
layer's output is what flows backward through the composite's rules; CRP conditions it on a
concept, a channel c of that layer:

    R_l^{(c)}[j, u, v] = R_l[j, u, v] · 1[j = c],     heatmap_c = LRP from R_l^{(c)} down to the input,

the channel's relevance is r_c = Σ_{u,v} R_l[c, u, v], and the explained concepts of an input are
its top-m channels by r_c (the "relevance maximisation" view of the paper's local analysis).
Backward passes through LRP rules are linear in the relevance they carry, so the heatmaps of all
channels sum to the plain LRP heatmap (conservation across concepts, tested).

Relevance starts at the output as R = f_k(x) on the explained class k (0 elsewhere), so a
heatmap's sum approximates the logit's share carried by the concept. The model's
normalisation layer (a parameter-free module with ``mean`` and ``std`` buffers, such as
robustlens' ``Normalize``) passes relevance unchanged (zennit's Pass rule), so the heatmap is in
pixel space without a 1/std factor.

Departure from ``zennit-crp`` (the authors' package, which pins zennit <= 0.4.6): the
conditioning is a gradient hook on the layer's output tensor inside zennit's own composite
context, with the m conditions of each input batched as m copies of it (one forward and one
backward pass for all of them), as zennit-crp does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from zennit.composites import COMPOSITES
from zennit.core import Composite
from zennit.rules import Pass

from attributions.lrp import canonizers_for
from common.modes import ModelMode, module_mode
from concepts.layers import check_layer

#: zennit composites that need no input bounds (EpsilonGammaBox needs the box of the inputs).
CRP_COMPOSITES: tuple[str, ...] = ("epsilon_plus_flat", "epsilon_plus", "epsilon_alpha2_beta1", "epsilon_alpha2_beta1_flat")


def _normalisation_types(model: nn.Module) -> tuple[type, ...]:
    """Types of the parameter-free modules of ``model`` that hold ``mean`` and ``std`` tensors."""
    found = {
        type(m)
        for m in model.modules()
        if isinstance(getattr(m, "mean", None), Tensor) and isinstance(getattr(m, "std", None), Tensor) and not any(True for _ in m.parameters(recurse=False))
    }
    return tuple(sorted(found, key=lambda t: t.__name__))


def build_composite(name: str, model: nn.Module) -> Composite:
    """zennit composite ``name`` (one of :data:`CRP_COMPOSITES`) for ``model``, with the
    canonizers LRP uses for it (:func:`attributions.lrp.canonizers_for`: explicit residual sums,
    BatchNorm merged where that keeps the function) and the normalisation layer passing
    relevance through."""
    if name not in CRP_COMPOSITES:
        raise ValueError(f"composite must be one of {CRP_COMPOSITES}, got {name!r}")
    normalisation = _normalisation_types(model)
    layer_map = [(normalisation, Pass())] if normalisation else []
    return COMPOSITES[name](layer_map=layer_map, canonizers=canonizers_for(model))


@dataclass(frozen=True)
class ConceptHeatmaps:
    """The top concepts of each input and their conditional heatmaps.

    Attributes:
        channels: (B, m) channel indices, most relevant first.
        relevance: (B, m) their relevance r_c.
        total: (B,) Σ_c r_c over all channels of the layer.
        heatmaps: (B, m, C, H, W) input relevance conditioned on each channel.
    """

    channels: Tensor
    relevance: Tensor
    total: Tensor
    heatmaps: Tensor


class ConceptRelevance:
    """CRP on one layer: channel relevances and channel-conditional LRP heatmaps.

    Args:
        layer: module name (``model.named_modules()``) whose output channels are the concepts;
            its output must be (B, K, ...) and produced once per forward pass.
        composite: zennit composite name (:data:`CRP_COMPOSITES`) or a zennit ``Composite``.
        model_mode: "eval" (LRP explains the deployed model), "train" or None.
    """

    def __init__(self, layer: str, composite: str | Composite = "epsilon_plus_flat", model_mode: ModelMode | None = "eval") -> None:
        if not isinstance(layer, str) or not layer:
            raise ValueError(f"layer must be a module name, got {layer!r}")
        if isinstance(composite, str) and composite not in CRP_COMPOSITES:
            raise ValueError(f"composite must be one of {CRP_COMPOSITES} or a zennit Composite, got {composite!r}")
        if not isinstance(composite, (str, Composite)):
            raise ValueError(f"composite must be one of {CRP_COMPOSITES} or a zennit Composite, got {composite!r}")
        self.layer = layer
        self.composite = composite
        self.model_mode = model_mode

    def _composite(self, model: nn.Module) -> Composite:
        return build_composite(self.composite, model) if isinstance(self.composite, str) else self.composite

    def propagate(self, model: nn.Module, inputs: Tensor, target: Tensor, masks: Tensor | None) -> tuple[Tensor, Tensor]:
        """One LRP pass: (input relevance (N, C, H, W), relevance at the layer (N, K, ...)), started
        at R = f_t(x) on each input's ``target``; ``masks`` (N, K) keeps channels of the layer's
        relevance (None: all, the plain LRP heatmap)."""
        module = check_layer(model, self.layer)
        at_layer: list[Tensor] = []

        def condition(grad: Tensor) -> Tensor:
            at_layer.append(grad)
            if masks is None:
                return grad
            return grad * masks.view(*masks.shape, *([1] * (grad.dim() - 2))).to(grad)

        def hook(_module: nn.Module, _args: object, output: Tensor) -> None:
            if not isinstance(output, Tensor) or output.dim() < 2:
                raise ValueError(f"layer must output one (B, K, ...) tensor, got {type(output).__name__} from {self.layer!r}")
            if output.requires_grad:
                output.register_hook(condition)

        x = inputs.detach().clone().requires_grad_(True)
        with module_mode(model, self.model_mode), torch.enable_grad(), self._composite(model).context(model) as modified:
            handle = module.register_forward_hook(hook)
            try:
                logits = modified(x)  # (N, classes)
            finally:
                handle.remove()
            start = torch.zeros_like(logits)
            rows = torch.arange(logits.shape[0], device=logits.device)
            start[rows, target] = logits.detach()[rows, target]  # R = f_k(x) on the explained class
            (relevance,) = torch.autograd.grad(logits, [x], grad_outputs=start)
        if len(at_layer) != 1:
            raise ValueError(f"layer must be called once per forward pass, got {len(at_layer)} calls of {self.layer!r}")
        return relevance.detach(), at_layer[0].detach()

    def channel_relevance(self, model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
        """(B, K) relevance r_c of each channel of the layer for the target classes."""
        _, at_layer = self.propagate(model, inputs, target, None)
        return at_layer.flatten(2).sum(dim=2)

    def conditional_heatmaps(
        self, model: nn.Module, inputs: Tensor, target: Tensor, channels: Tensor, num_channels: int | None = None
    ) -> Tensor:
        """(B, m, C, H, W) input relevance of each input conditioned on each of its ``channels``
        (B, m); ``num_channels`` is the layer's K (None: found by a forward pass)."""
        b, m = channels.shape
        repeated = inputs.repeat_interleave(m, dim=0)  # (B·m, C, H, W), the m conditions of an input together
        targets = target.repeat_interleave(m)
        k = self.channel_count(model, inputs[:1]) if num_channels is None else num_channels
        masks = torch.zeros(b * m, k, device=inputs.device)
        masks[torch.arange(b * m), channels.flatten().to(inputs.device)] = 1.0
        relevance, _ = self.propagate(model, repeated, targets, masks)
        return relevance.view(b, m, *inputs.shape[1:])

    def channel_count(self, model: nn.Module, inputs: Tensor) -> int:
        """Channels K of the layer's output."""
        sizes: list[int] = []
        handle = check_layer(model, self.layer).register_forward_hook(lambda _m, _a, out: sizes.append(int(out.shape[1])))
        try:
            with torch.no_grad(), module_mode(model, self.model_mode):
                model(inputs)
        finally:
            handle.remove()
        return sizes[0]

    def __call__(self, model: nn.Module, inputs: Tensor, target: Tensor, top: int = 3) -> ConceptHeatmaps:
        """The ``top`` most relevant channels of each input and their conditional heatmaps.

        Args:
            model: the classifier, taking images in [0, 1].
            inputs: (B, C, H, W) images.
            target: (B,) explained classes.
            top: m, channels per input (at most the layer's channel count).
        """
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise ValueError(f"top must be an integer >= 1, got {top!r}")
        relevance = self.channel_relevance(model, inputs, target)  # (B, K)
        if top > relevance.shape[1]:
            raise ValueError(f"top must be at most the layer's {relevance.shape[1]} channels, got {top}")
        values, channels = relevance.topk(top, dim=1)  # (B, m)
        heatmaps = self.conditional_heatmaps(model, inputs, target, channels, relevance.shape[1])
        return ConceptHeatmaps(channels, values, relevance.sum(dim=1), heatmaps)
