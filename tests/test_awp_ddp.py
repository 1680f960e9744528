"""AWP under DDP: one process and two end with the same weights.

Kept apart from tests/test_awp.py, with imports limited to torch and the losses, because every
spawned process imports this module: without Lightning the two processes start in a few
seconds.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from attacks import PGD
from losses import AWP, PGDAdversarialTraining
from tests.ddp import run_distributed


def small_cnn(seed: int = 0) -> nn.Module:
    """A BatchNorm-free CNN: batch statistics would differ between halves and the whole batch."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)
    )


class TrainingStep(nn.Module):
    """What Lightning wraps in DDP: a module whose forward runs the whole objective."""

    def __init__(self, model: nn.Module, objective: nn.Module) -> None:
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.objective(self.model, x, y).loss


def _train(rank: int, world_size: int, state: dict, x: Tensor, y: Tensor, steps: int) -> dict[str, Tensor]:
    """SGD steps of AT-AWP on this rank's share of the batch (the whole batch alone)."""
    model = small_cnn()
    model.load_state_dict(state)
    objective = AWP(PGDAdversarialTraining(PGD(eps=0.1, step_size=0.04, steps=2, seed=5)), gamma=0.05)
    step: nn.Module = TrainingStep(model, objective)
    if world_size > 1:
        step = nn.parallel.DistributedDataParallel(step)
    optimizer = torch.optim.SGD(step.parameters(), lr=0.5)
    share = torch.tensor_split(torch.arange(len(y)), world_size)[rank]
    for _ in range(steps):
        optimizer.zero_grad()
        step(x[share], y[share]).backward()
        optimizer.step()
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_one_and_two_processes_end_with_the_same_weights(tmp_path: Path) -> None:
    """DDP averages ∇L(w + v) once (the ascent, taken with autograd.grad, runs none of its hooks:
    a second pass through them would fail the step), and AWP averages the ascent direction across
    processes, so two processes on halves of the batch take the steps one process takes on the
    whole batch, and stay identical to each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        state = small_cnn().state_dict()
        generator = torch.Generator().manual_seed(0)
        x, y = torch.rand(16, 1, 16, 16, generator=generator), torch.randint(0, 3, (16,), generator=generator)
        single = _train(0, 1, state, x, y, 2)
        ranks = run_distributed(_train, tmp_path, world_size=2, args=(state, x, y, 2))
    finally:
        torch.set_num_threads(threads)
    for name, value in single.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), name
        torch.testing.assert_close(ranks[0][name], value, rtol=1e-4, atol=1e-6, msg=name)
        assert not torch.equal(value, state[name])
