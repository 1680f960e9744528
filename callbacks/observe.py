"""Run evaluation code inside training without changing what training does next.

Monitoring callbacks compute attributions, attacks and metrics between training steps. For the
run to end exactly as it would without them, the computation must leave behind nothing that
training reads: the model's train/eval flags, the weights' ``.grad``, the optimiser's state
and the random-number streams. :func:`observing` takes care of the modes and the streams (and
of gradients being enabled even under Lightning's inference-mode validation); gradients are
only ever taken with ``torch.autograd.grad`` with respect to inputs by the code it wraps, so
``.grad`` and the optimiser are never touched.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from common.modes import module_mode


def cuda_devices(model: nn.Module) -> list[int]:
    """Indices of the CUDA devices that hold ``model``'s parameters or buffers."""
    tensors = [*model.parameters(), *model.buffers()]
    return sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})


@contextmanager
def observing(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluate ``model`` inside the body as a bystander.

    Inside: gradients enabled and inference mode off (attributions and attacks need input
    gradients, also when called from Lightning's validation loop), every submodule in eval mode
    (BatchNorm on running statistics, dropout off: the deployed model). On exit, whatever
    happened inside: each submodule's ``training`` flag is put back, and the global random
    streams of torch (CPU and the model's CUDA devices), NumPy and Python are restored, so even
    draws made by third-party code (a logger, a plotting library) do not shift training.
    """
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    try:
        with (
            torch.random.fork_rng(devices=cuda_devices(model)),
            torch.inference_mode(False),
            torch.enable_grad(),
            module_mode(model, "eval"),
        ):
            yield model
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
