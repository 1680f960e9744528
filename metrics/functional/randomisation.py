"""Sanity check by cascading model-parameter randomisation (Adebayo, Gilmer, Muelly, Goodfellow,
Hardt & Kim, "Sanity Checks for Saliency Maps", NeurIPS 2018).

On a copy of the model, the layers with parameters are re-initialised one after the other from
the top (the logits) down, cumulatively; after each one the explanation of the same class is
computed again and compared with the original by Spearman's rank correlation of the |Φ| maps,
by SSIM of the maps rescaled to [0, 1] and, on request (scikit-image needed), by the rank
correlation of their HOG features, the paper's three similarities. An explanation that depends on
what the model learnt loses similarity as more layers are randomised; a model-independent one
(the edge detector) stays at 1. The model passed in is never modified.

Result shape: per example and per randomisation stage, (B, L) for L layers with parameters;
column l is the similarity after re-initialising the top l + 1 layers (column L − 1: the whole
network), and ``layers[l]`` names the layer re-initialised at that stage.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
from torch import Tensor, nn

from attributions import AttributionMethod, pixel_map
from attributions.base import normal_tensor
from common.modes import module_mode
from common.similarity import spearman
from metrics.functional.similarity import hog_similarity, require_hog, ssim

RANDOMISATION_SIMILARITIES: tuple[str, ...] = ("spearman", "ssim", "hog")


class RandomisationResult(NamedTuple):
    """Per-layer similarities of the cascading randomisation.

    Attributes:
        layers: names of the re-initialised layers, top (output) first.
        spearman: (B, L) Spearman's ρ of the |Φ| maps, original vs after stage l.
        ssim: (B, L) SSIM of the maps rescaled to [0, 1].
        hog: (B, L) Spearman's ρ of their HOG features, or None when not requested.
    """

    layers: list[str]
    spearman: Tensor
    ssim: Tensor
    hog: Tensor | None = None


def parameter_layers(model: nn.Module, x: Tensor) -> list[str]:
    """Names of the modules with their own parameters and ``reset_parameters``, in the order the
    forward pass of ``x`` first calls them (so "top" means closest to the output)."""
    candidates = {
        module: name
        for name, module in model.named_modules()
        if any(True for _ in module.parameters(recurse=False)) and callable(getattr(module, "reset_parameters", None))
    }
    order: list[str] = []
    handles = [
        module.register_forward_hook(lambda m, args, out: order.append(candidates[m]) if candidates[m] not in order else None)
        for module in candidates
    ]
    try:
        with torch.no_grad(), module_mode(model, "eval"):
            model(normal_tensor(x[:1]))
    finally:
        for handle in handles:
            handle.remove()
    return order


def cascading_randomisation(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    method: AttributionMethod,
    attribution: Tensor | None = None,
    seed: int = 0,
    hog: bool = False,
) -> RandomisationResult:
    """Similarity of the explanation after each stage of cascading re-initialisation.

    Args:
        model: the trained classifier (left untouched; a deep copy is randomised).
        x: (B, C, H, W) inputs.
        target: (B,) explained classes (the same class at every stage).
        method: the attribution method.
        attribution: Φ(x) on the trained model when already computed.
        seed: seed of the re-initialisation (layer l uses seed + l; the global RNG is restored).
        hog: also compute the HOG similarity (needs scikit-image).
    """
    if hog:
        require_hog()  # before any work
    layers = parameter_layers(model, x)
    if not layers:
        raise ValueError("model must have layers with parameters and reset_parameters() to randomise")
    original = pixel_map(method(model, x, target) if attribution is None else attribution)  # (B, H, W)
    with torch.inference_mode(False):  # a copy made under inference mode could not be differentiated
        randomised = copy.deepcopy(model)
    modules = dict(randomised.named_modules())
    cuda_devices = sorted({p.device.index or 0 for p in randomised.parameters() if p.device.type == "cuda"})
    rho, structural, gradients = [], [], []
    for stage, name in enumerate(reversed(layers)):
        with torch.random.fork_rng(devices=cuda_devices):  # leave the caller's RNG streams alone
            torch.manual_seed(seed + stage)
            with torch.no_grad():
                modules[name].reset_parameters()  # type: ignore[operator]
        maps = pixel_map(method(randomised, x, target))
        rho.append(spearman(original, maps))
        structural.append(ssim(original, maps))
        if hog:
            gradients.append(hog_similarity(original, maps))
    return RandomisationResult(
        list(reversed(layers)),
        torch.stack(rho, dim=1),
        torch.stack(structural, dim=1),
        torch.stack(gradients, dim=1) if hog else None,
    )
