"""A named layer's activations h(x) and the gradients ∇_h f_k of a class logit with respect to them.

The layer is a module name as in ``model.named_modules()``; a forward hook captures its output
(which must be one tensor, produced once per forward pass). Gradients are taken with
``torch.autograd.grad`` with respect to that output only, in batches, under the mode the caller
chose: the weights' ``.grad`` and the inputs are never written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


def check_layer(model: nn.Module, layer: str) -> nn.Module:
    """The module named ``layer``, or a ValueError that names the field and a few choices."""
    modules = dict(model.named_modules())
    if not isinstance(layer, str) or layer not in modules or layer == "":
        choices = [name for name in modules if name][:12]
        raise ValueError(f"layer must name a submodule of the model (e.g. {choices}), got {layer!r}")
    return modules[layer]


@contextmanager
def _capture(module: nn.Module, layer: str) -> Iterator[list[Tensor]]:
    captured: list[Tensor] = []

    def hook(_module: nn.Module, _args: object, output: object) -> None:
        if not isinstance(output, Tensor):
            raise ValueError(f"layer must output one tensor, got {type(output).__name__} from {layer!r}")
        captured.append(output)

    handle = module.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def _one(captured: list[Tensor], layer: str) -> Tensor:
    if len(captured) != 1:
        raise ValueError(f"layer must be called once per forward pass, got {len(captured)} calls of {layer!r}")
    return captured[0]


def layer_activations(model: nn.Module, layer: str, inputs: Tensor, batch_size: int = 256) -> Tensor:
    """Flattened activations h(x) of ``layer``: (N, D), detached, on the inputs' device."""
    module = check_layer(model, layer)
    rows = []
    with torch.no_grad():
        for start in range(0, inputs.shape[0], batch_size):
            with _capture(module, layer) as captured:
                model(inputs[start : start + batch_size])
            rows.append(_one(captured, layer).flatten(1))  # (b, D)
    return torch.cat(rows)


def layer_gradients(model: nn.Module, layer: str, inputs: Tensor, target: int, batch_size: int = 256) -> Tensor:
    """Gradients ∂f_target/∂h of the target logit at the flattened activations of ``layer``:
    (N, D), one row per input (each example's logit depends on its own activations only, as in
    any model without batch-coupled layers in the chosen mode, e.g. eval-mode BatchNorm)."""
    module = check_layer(model, layer)
    rows = []
    for start in range(0, inputs.shape[0], batch_size):
        # An input that requires grad puts the activations in a graph even with frozen weights.
        x = inputs[start : start + batch_size].detach().requires_grad_(True)
        with torch.enable_grad(), _capture(module, layer) as captured:
            logits = model(x)  # (b, K)
        h = _one(captured, layer)
        if not 0 <= target < logits.shape[1]:
            raise ValueError(f"target must be a class index in [0, {logits.shape[1] - 1}], got {target}")
        (grad,) = torch.autograd.grad(logits[:, target].sum(), [h])
        rows.append(grad.flatten(1).detach())  # (b, D)
    return torch.cat(rows)
