"""Time per training step and peak memory of every objective, relative to ERM, on the CPU.

The quickstart model (small_cnn, width 16, hidden 128, 1×28×28 synthetic shapes, 4 classes) and
one optimiser step (zero_grad, objective, backward, Adam step) per measurement. Objectives are
measured interleaved (round-robin in a shuffled order each round) so that load from other
processes on a shared machine falls on all of them alike; the table gives medians and each
median's ratio to ERM's at the same batch size.

Peak memory is the largest total of live tensor storage during one step, from the PyTorch
profiler's memory timeline (``profile_memory=True``; the same data as
``torch.profiler.profile.export_memory_timeline``), taken in a separate, untimed step. It counts
tensors (activations, gradients, graphs of second-order terms), not the allocator's caches or
the Python heap.

    PYTHONPATH=. python benchmarks/objectives_speed.py [--batch-sizes 64 128] [--rounds 15] [--threads 1] 2>/dev/null
    PYTHONPATH=. python benchmarks/objectives_speed.py --only "pgd_at K=1" "pgd_at K=3" "pgd_at K=7" "pgd_at K=10"

(the profiler writes start/stop lines to stderr; the table goes to stdout.)

    PYTHONPATH=. python benchmarks/objectives_speed.py --relative-to "pgd_at K=7" \
        --only "pgd_at K=7" "mart K=7" "pgd_at K=7 + awp" "trades K=7" "trades K=7 + awp" "pgd_at K=7 + ema"

The two-gradient penalties, before and after their gradients were paired and shared
(``(previous)`` rows run the former code, kept here; "one forward" forces the CUDA path of
:mod:`losses.gradient_pairs`, clean and perturbed batches in one forward, onto the CPU):

    PYTHONPATH=. python benchmarks/objectives_speed.py --batch-sizes 64 128 --rounds 11 --threads 1 \
        --only "pgd_at K=7" "erm + input_gradient" "erm + attribution_stability" \
        "erm + attribution_stability (previous)" "attribution_stability + erm, one forward" \
        "attribution_stability alone" "attribution_stability alone (previous)" "erm + curvature" \
        "erm + curvature (previous)" "erm + input_gradient + curvature" \
        "erm + input_gradient + curvature (previous)"

Expectations checked by the table: PGD-K costs about (K + 1) ERM steps (each attack step is a
forward and an input backward, a little cheaper than a training step), FGSM-RS about 2, and a
single double-backprop penalty (ERM + input-gradient norm) no more than about 3. AWP adds one
forward-backward at the unperturbed weights (the ascent; about one more ERM step over its
objective), MART costs what TRADES does, and the EMA update is an elementwise pass over the
weights.
"""

from __future__ import annotations

import argparse
import copy
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from attacks import PGD, FGSMRandomStart
from callbacks import WeightAverage
from datamodules import generate_shapes
from lightning_modules import build_model
from losses import (
    AWP,
    ERM,
    MART,
    TRADES,
    AttributionStability,
    CurvaturePenalty,
    FastAdversarialTraining,
    IGNorm,
    InputGradientPenalty,
    Objective,
    Part,
    PGDAdversarialTraining,
    SaliencyGuidedTraining,
    WeightedSum,
    gradient_pairs,
)
from losses.attribution_stability import saliency_with_graph
from losses.base import ObjectiveOutput, StepContext
from losses.input_gradients import clean_forward, flat_cosine, input_leaf, per_example_loss_gradient

EPS = 0.1


class PreviousAttributionStability(AttributionStability):
    """The penalty as it was before the gradients were paired (for side-by-side timing): the
    clean forward shared, each gradient its own ``autograd.grad`` call, nothing else shared."""

    def forward(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext | None = None) -> ObjectiveOutput:
        attack = self.attack
        x_perturbed = self.perturbed_input(model, x, y, attack, context)
        x_leaf, logits = clean_forward(model, x, context, needs_input_grad=True)
        g_clean = torch.autograd.grad(logits.gather(1, y[:, None]).sum(), [x_leaf], create_graph=True)[0]
        g_perturbed = saliency_with_graph(model, x_perturbed, y)
        penalty = 1.0 - flat_cosine(g_clean, g_perturbed).mean()
        return ObjectiveOutput(penalty, {"penalty": penalty.detach()}, None)


class PreviousCurvaturePenalty(CurvaturePenalty):
    """The curvature penalty as it was before its clean gradient was shared (side-by-side timing)."""

    def forward(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext | None = None) -> ObjectiveOutput:
        h = self.finite_difference_step
        x_leaf, logits = clean_forward(model, x, context, needs_input_grad=True)
        grad = per_example_loss_gradient(x_leaf, logits, y, create_graph=True)
        z = grad.detach().sign()
        z = z / z.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
        x_shifted = input_leaf(x.detach() + h * z)
        grad_shifted = per_example_loss_gradient(x_shifted, model(x_shifted), y, create_graph=True)
        penalty = (grad_shifted - grad).flatten(1).pow(2).sum(1).mean() / h**2
        return ObjectiveOutput(penalty, {"penalty": penalty.detach()}, None)


class BatchedForwardOnCPU(Objective):
    """Runs ``objective`` with the clean and perturbed batches in one forward on the CPU too
    (the path :data:`losses.gradient_pairs.BATCHED_FORWARD_DEVICES` takes on CUDA)."""

    def __init__(self, objective: Objective) -> None:
        super().__init__()
        self.objective = objective

    def forward(self, model: nn.Module, x: Tensor, y: Tensor, context: StepContext | None = None) -> ObjectiveOutput:
        devices = gradient_pairs.BATCHED_FORWARD_DEVICES
        gradient_pairs.BATCHED_FORWARD_DEVICES = devices | {"cpu"}
        try:
            return self.objective(model, x, y, context)
        finally:
            gradient_pairs.BATCHED_FORWARD_DEVICES = devices


def pgd(steps: int) -> PGD:
    return PGD(eps=EPS, step_size=2.5 * EPS / steps, steps=steps)


OBJECTIVES: dict[str, Callable[[], Objective]] = {
    "erm": lambda: ERM(),
    "fast_at (FGSM-RS)": lambda: FastAdversarialTraining(FGSMRandomStart(eps=EPS), co_check_every=0),
    "pgd_at K=1": lambda: PGDAdversarialTraining(pgd(1)),
    "pgd_at K=3": lambda: PGDAdversarialTraining(pgd(3)),
    "pgd_at K=7": lambda: PGDAdversarialTraining(pgd(7)),
    "pgd_at K=10": lambda: PGDAdversarialTraining(pgd(10)),
    "trades K=7": lambda: TRADES(beta=6.0, attack=pgd(7)),
    "mart K=7": lambda: MART(beta=6.0, attack=pgd(7)),
    "pgd_at K=7 + awp": lambda: AWP(PGDAdversarialTraining(pgd(7)), gamma=0.01),
    "trades K=7 + awp": lambda: AWP(TRADES(beta=6.0, attack=pgd(7)), gamma=0.005),
    "pgd_at K=7 + ema": lambda: PGDAdversarialTraining(pgd(7)),  # + the averaging step, below
    "saliency_guided": lambda: SaliencyGuidedTraining(),
    "erm + input_gradient": lambda: WeightedSum([Part(ERM()), Part(InputGradientPenalty(), 0.1)]),
    "erm + attribution_stability": lambda: WeightedSum([Part(ERM()), Part(AttributionStability(attack=PGD(eps=EPS)))]),
    "erm + attribution_stability (previous)": lambda: WeightedSum(
        [Part(ERM()), Part(PreviousAttributionStability(attack=PGD(eps=EPS)))]
    ),
    "attribution_stability + erm, one forward": lambda: BatchedForwardOnCPU(
        WeightedSum([Part(AttributionStability(attack=PGD(eps=EPS))), Part(ERM())])
    ),
    "attribution_stability alone": lambda: AttributionStability(attack=PGD(eps=EPS)),
    "attribution_stability alone (previous)": lambda: PreviousAttributionStability(attack=PGD(eps=EPS)),
    "erm + curvature": lambda: WeightedSum([Part(ERM()), Part(CurvaturePenalty(finite_difference_step=1.5))]),
    "erm + curvature (previous)": lambda: WeightedSum(
        [Part(ERM()), Part(PreviousCurvaturePenalty(finite_difference_step=1.5))]
    ),
    "erm + input_gradient + curvature": lambda: WeightedSum(
        [Part(ERM()), Part(InputGradientPenalty(), 0.1), Part(CurvaturePenalty(finite_difference_step=1.5))]
    ),
    "erm + input_gradient + curvature (previous)": lambda: WeightedSum(
        [Part(ERM()), Part(InputGradientPenalty(), 0.1), Part(PreviousCurvaturePenalty(finite_difference_step=1.5))]
    ),
    "erm + ig_norm m=10 K=3": lambda: WeightedSum(
        [Part(ERM()), Part(IGNorm(riemann_steps=10, attack=PGD(eps=EPS, step_size=0.04, steps=3)))]
    ),
    "pgd_at K=7 + attribution_stability": lambda: WeightedSum(
        [
            Part(PGDAdversarialTraining(), share_attack=True),
            Part(AttributionStability(perturbation="ce_adversarial"), share_attack=True),
        ],
        shared_attack=pgd(7),
    ),
}


WEIGHT_AVERAGED = {"pgd_at K=7 + ema"}


class Runner:
    """One model, optimiser and objective, stepping on a fixed batch (and updating an EMA of the
    weights after each step, as ``callbacks.WeightAverage`` does, when ``average`` is set)."""

    def __init__(self, objective: Objective, x: torch.Tensor, y: torch.Tensor, average: bool = False) -> None:
        torch.manual_seed(0)
        self.model: nn.Module = build_model(
            "small_cnn", 4, (1, 28, 28), (0.5,), (0.25,), backbone_kwargs={"width": 16, "hidden": 128}
        )
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=2e-3)
        self.objective = objective
        self.x, self.y = x, y
        self.average: WeightAverage | None = None
        if average:
            self.average = WeightAverage(decay=0.999)
            self.average.average = copy.deepcopy(self.model).requires_grad_(False)

    def step(self) -> None:
        self.optimizer.zero_grad()
        loss = self.objective(self.model, self.x, self.y).loss
        loss.backward()
        self.optimizer.step()
        if self.average is not None:
            self.average.update(self.model)

    def timed_step(self) -> float:
        start = time.perf_counter()
        self.step()
        return time.perf_counter() - start

    def peak_memory_bytes(self) -> float:
        """Largest total of live tensor bytes during one step, from the profiler's memory timeline."""
        from torch.profiler import ProfilerActivity, profile
        from torch.profiler._memory_profiler import MemoryProfileTimeline

        activities = [ProfilerActivity.CPU]
        with profile(activities=activities, profile_memory=True, record_shapes=True, with_stack=True) as prof:
            self.step()
        _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline("cpu")
        return float(max(sum(row) for row in sizes))


def measure(batch_size: int, rounds: int, names: list[str]) -> dict[str, tuple[float, float]]:
    data = generate_shapes(batch_size, 4, 28, 1, seed=0)
    runners = {
        name: Runner(OBJECTIVES[name](), data.images, data.labels, average=name in WEIGHT_AVERAGED) for name in names
    }
    for runner in runners.values():  # warm-up: allocations, .grad, Adam state
        runner.step()
        runner.step()
    times: dict[str, list[float]] = {name: [] for name in names}
    order = list(names)
    shuffle = random.Random(0)
    for _ in range(rounds):
        shuffle.shuffle(order)
        for name in order:
            times[name].append(runners[name].timed_step())
    return {name: (statistics.median(times[name]), runners[name].peak_memory_bytes()) for name in names}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--rounds", type=int, default=15, help="timed steps per objective (interleaved)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--only", nargs="*", default=None, help="subset of objectives (ERM is always measured)")
    parser.add_argument("--relative-to", default="erm", help="the objective the ratios divide by (default erm)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = list(OBJECTIVES) if not args.only else ["erm", *[n for n in args.only if n != "erm"]]
    if args.relative_to not in names:
        parser.error(f"--relative-to must be one of the measured objectives {names}, got {args.relative_to!r}")
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        parser.error(f"--only must name objectives of {list(OBJECTIVES)}, got {unknown}")

    print(f"command: PYTHONPATH=. python {shlex.join([sys.argv[0], *sys.argv[1:]])}", flush=True)
    print(
        f"torch {torch.__version__}, CPU, {args.threads} thread(s), {args.rounds} interleaved rounds, medians; "
        "quickstart model (small_cnn w16 h128, 1x28x28, 4 classes), L∞ ε = 0.1"
    )
    for batch_size in args.batch_sizes:
        results = measure(batch_size, args.rounds, names)
        erm_time, erm_memory = results[args.relative_to]
        ratio = "× ERM" if args.relative_to == "erm" else "× ref"
        print(f"\nbatch size {batch_size}" + ("" if args.relative_to == "erm" else f"; ref = {args.relative_to}"))
        print(f"| {'objective':<44} | {'ms/step':>8} | {ratio:>6} | {'peak MB':>8} | {ratio:>6} |")
        print(f"|{'-' * 46}|{'-' * 10}|{'-' * 8}|{'-' * 10}|{'-' * 8}|")
        for name in names:
            seconds, memory = results[name]
            print(
                f"| {name:<44} | {1e3 * seconds:8.1f} | {seconds / erm_time:6.2f} | "
                f"{memory / 2**20:8.1f} | {memory / erm_memory:6.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
