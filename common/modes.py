"""Put a model in a chosen train/eval mode for a while and restore exactly what was there.

Attacks, attributions and callbacks all run a model in a mode they choose (BatchNorm on running
statistics, say) and must hand it back as they found it. Restoring ``model.train(was_training)``
is not enough when submodules disagree with the root (a frozen BatchNorm inside a training
model), so every submodule's flag is recorded and put back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from torch import nn

ModelMode = Literal["eval", "train"]
MODEL_MODES: tuple[str, ...] = ("eval", "train")


@contextmanager
def module_mode(model: nn.Module, mode: ModelMode | None) -> Iterator[nn.Module]:
    """Run the body with ``model`` in ``mode`` ("eval", "train", or None to leave it alone).

    Every submodule's ``training`` flag is restored on exit, also when the body raises.
    """
    if mode is None:
        yield model
        return
    if mode not in MODEL_MODES:
        raise ValueError(f"mode must be one of {MODEL_MODES} or None, got {mode!r}")
    saved = [(module, module.training) for module in model.modules()]
    model.train(mode == "train")
    try:
        yield model
    finally:
        for module, training in saved:
            module.training = training
