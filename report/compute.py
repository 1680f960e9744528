"""Compute a checked report (:class:`report.plan.ReportPlan`): the metrics table, the accuracy
curve and the attributions of the figure.

Metrics come from :func:`metrics.compute_metrics` (one call per method and batch, so the
metrics share Φ(x) and the perturbed attributions) and are accumulated by the torchmetrics
wrappers of :func:`metrics.build_metric`: NaN scores (a constant map for a rank correlation)
are left out of a mean and counted apart. Examples carry their test-split indices as
``example_ids``, so every random draw of the metrics follows the example, not the batch.

Everything random is seeded by ``settings.seed``, and the whole computation runs inside
``torch.random.fork_rng``, so a report is reproducible and leaves the caller's RNG alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from attacks import PGD
from attributions import pixel_map
from datamodules import ProbeBatch
from metrics import PER_LAYER_METRICS, build_metric, compute_metrics
from metrics.functional import parameter_layers
from report.plan import ReportPlan

#: PGD step size as a multiple of ε / steps (Madry et al. 2018 use 2.5 ε / steps).
STEP_SIZE_FACTOR = 2.5


@dataclass
class MetricResult:
    """One cell of the metrics table.

    Attributes:
        value: the mean over the examples with a defined score; for a per-layer metric, the
            value after the last stage (the whole network randomised); None when undefined
            for every example.
        count: examples with a defined score.
        undefined: examples whose score was undefined (NaN).
        per_layer: for per-layer metrics, the mean at each stage (top layer first).
    """

    value: float | None
    count: int
    undefined: int
    per_layer: list[float | None] | None = None


@dataclass
class AccuracyCurve:
    """Accuracy under PGD at each ε of the grid, on the same examples.

    Attributes:
        eps: the grid, ascending, starting at 0 (no attack).
        accuracy: the share of examples classified correctly under PGD at each ε.
        worst_up_to_eps: the share classified correctly under every attack at ε' ≤ ε of the
            grid. An adversarial example at ε' is one at ε ≥ ε' too, so this is the tightest
            upper bound on robust accuracy the run found; where it is below ``accuracy``, PGD at
            ε missed errors that a smaller budget found (too few steps, or masked gradients).
        clean_accuracy: accuracy on the unperturbed examples.
        examples: the number of examples.
    """

    eps: list[float]
    accuracy: list[float]
    worst_up_to_eps: list[float]
    clean_accuracy: float
    examples: int

    @property
    def non_increasing(self) -> bool:
        return all(b <= a for a, b in zip(self.accuracy, self.accuracy[1:]))


@dataclass
class FigureData:
    """What the attribution figure shows.

    Attributes:
        x: (N, C, H, W) the examples, on the CPU.
        labels: (N,) their labels.
        predictions: (N,) the model's predictions.
        indices: (N,) their indices in the test split.
        maps: per method, (N, H, W) maps Σ_c |Φ_c| of the explained class.
    """

    x: Tensor
    labels: Tensor
    predictions: Tensor
    indices: Tensor
    maps: dict[str, Tensor]


@dataclass
class ReportResult:
    """A computed report.

    Attributes:
        plan: what was computed.
        metrics: ``{method: {metric: MetricResult}}``.
        randomisation_layers: the layers re-initialised by each stage of "randomisation" (top
            first), or None when that metric was not computed.
        accuracy: the accuracy curve.
        figure: the figure's data.
        seconds: wall time of each part (``metrics/<method>``, ``accuracy``, ``figure``).
    """

    plan: ReportPlan
    metrics: dict[str, dict[str, MetricResult]]
    randomisation_layers: list[str] | None
    accuracy: AccuracyCurve
    figure: FigureData
    seconds: dict[str, float]


def _batches(examples: ProbeBatch, batch_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + batch_size, len(examples))) for start in range(0, len(examples), batch_size)]


def _optional(value: float) -> float | None:
    return None if value != value else float(value)


def explanation_metrics(plan: ReportPlan, bar: Any) -> tuple[dict[str, dict[str, MetricResult]], dict[str, float]]:
    """Every method × metric on ``plan.examples``; returns the cells and seconds per method."""
    settings, device = plan.settings, plan.device
    table: dict[str, dict[str, MetricResult]] = {}
    seconds: dict[str, float] = {}
    for method_name, method in plan.methods.items():
        bar.set_postfix_str(method_name)
        start = time.perf_counter()
        wrappers = {name: build_metric(name) for name in plan.metrics}
        for lo, hi in _batches(plan.examples, settings.batch_size):
            batch = plan.examples.slice(lo, hi).to(device)
            scores = compute_metrics(
                plan.metrics,
                plan.model,
                batch.x,
                batch.y if settings.target == "label" else None,
                method,
                batch.mask,
                batch.spurious_mask,
                options=plan.metric_options,
                example_ids=batch.indices,
            )
            for name, value in scores.items():
                wrappers[name].update(value.float().cpu())
            bar.update(1)
        row = {}
        for name, wrapper in wrappers.items():
            if name in PER_LAYER_METRICS:
                rows = torch.cat(wrapper.scores)  # type: ignore[arg-type]  # (N, L)
                per_layer = [_optional(v) for v in wrapper.compute().tolist()]
                last = rows[:, -1]
                row[name] = MetricResult(per_layer[-1], int((~last.isnan()).sum()), int(last.isnan().sum()), per_layer)
            else:
                row[name] = MetricResult(
                    _optional(float(wrapper.compute())), int(wrapper.count), int(wrapper.undefined)  # type: ignore[arg-type]
                )
        table[method_name] = row
        seconds[f"metrics/{method_name}"] = time.perf_counter() - start
    return table, seconds


def accuracy_curve(plan: ReportPlan, bar: Any) -> AccuracyCurve:
    """Accuracy under PGD at every ε of ``plan.eps`` on ``plan.accuracy_examples``.

    At ε = 0 no attack runs: the clean predictions are used. Above, PGD under ``plan.norm``
    with ``attack_steps`` steps of 2.5 ε / steps and a random start seeded by ``seed``.
    """
    settings, device = plan.settings, plan.device
    examples = plan.accuracy_examples
    spans = _batches(examples, settings.batch_size)
    x_all, y_all = examples.x, examples.y
    correct = torch.zeros(len(plan.eps), len(examples), dtype=torch.bool)  # (E, N)
    with torch.no_grad():
        clean_correct = torch.cat(
            [plan.model(x_all[lo:hi].to(device)).argmax(dim=1).cpu() == y_all[lo:hi] for lo, hi in spans]
        )
    for i, eps in enumerate(plan.eps):
        if eps == 0.0:
            correct[i] = clean_correct
            continue
        bar.set_postfix_str(f"eps={eps:.4g}")
        attack = PGD(
            eps=eps,
            step_size=STEP_SIZE_FACTOR * eps / settings.attack_steps,
            steps=settings.attack_steps,
            norm=plan.norm,  # type: ignore[arg-type]
            restarts=settings.attack_restarts,
            seed=settings.seed,
        )
        for lo, hi in spans:
            x, y = x_all[lo:hi].to(device), y_all[lo:hi].to(device)
            x_adv = attack(plan.model, x, y)
            with torch.no_grad():
                correct[i, lo:hi] = (plan.model(x_adv).argmax(dim=1) == y).cpu()
            bar.update(1)
    worst = correct.cummin(dim=0).values  # (E, N): correct under every ε' ≤ ε
    return AccuracyCurve(
        eps=list(plan.eps),
        accuracy=correct.float().mean(dim=1).tolist(),
        worst_up_to_eps=worst.float().mean(dim=1).tolist(),
        clean_accuracy=float(clean_correct.float().mean()),
        examples=len(examples),
    )


def figure_data(plan: ReportPlan) -> FigureData:
    """The figure's examples, the model's predictions and each method's maps."""
    rows = torch.as_tensor(plan.figure_rows, dtype=torch.long)
    x = plan.examples.x[rows].to(plan.device)
    y = plan.examples.y[rows].to(plan.device)
    with torch.no_grad():
        predicted = plan.model(x).argmax(dim=1)
    target = y if plan.settings.target == "label" else predicted
    maps = {name: pixel_map(method(plan.model, x, target)).cpu() for name, method in plan.methods.items()}
    return FigureData(x.cpu(), y.cpu(), predicted.cpu(), plan.examples.indices[rows], maps)


def compute_report(plan: ReportPlan) -> ReportResult:
    """Compute everything ``plan`` describes (progress bars on stderr when ``settings.progress``)."""
    settings = plan.settings
    seconds: dict[str, float] = {}
    disable = not settings.progress
    devices = [plan.device.index or 0] if plan.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(settings.seed)
        n_batches = len(_batches(plan.examples, settings.batch_size))
        with tqdm(total=len(plan.methods) * n_batches, desc="explanation metrics", unit="batch", disable=disable) as bar:
            table, method_seconds = explanation_metrics(plan, bar)
        seconds.update(method_seconds)
        attacked = sum(1 for e in plan.eps if e > 0)
        start = time.perf_counter()
        n_batches = len(_batches(plan.accuracy_examples, settings.batch_size))
        with tqdm(total=attacked * n_batches, desc="accuracy against eps", unit="batch", disable=disable) as bar:
            curve = accuracy_curve(plan, bar)
        seconds["accuracy"] = time.perf_counter() - start
        start = time.perf_counter()
        figure = figure_data(plan)
        seconds["figure"] = time.perf_counter() - start
    layers = None
    if "randomisation" in plan.metrics:
        layers = list(reversed(parameter_layers(plan.model, plan.examples.x[:1].to(plan.device))))
    return ReportResult(plan, table, layers, curve, figure, seconds)
