"""Compute a checked report (:class:`report.plan.ReportPlan`): the metrics table, the accuracy
curve, the attributions of the figure and the concept heatmaps (CRP) of its first examples.

Every number comes from the evaluation core, the same algorithms the monitoring callbacks call:
:func:`evaluation.explanation_scores` (methods × metrics: one :func:`metrics.compute_metrics` call
per method and batch, torchmetrics wrappers, NaN scores left out of a mean and counted apart),
:func:`evaluation.randomisation_check` (the ``randomisation`` column) and
:func:`evaluation.robust_correctness` (every attack at every ε, the per-example worst case).
Examples carry their test-split indices as ``example_ids``, so every random draw follows the
example, not the batch.

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

from attributions import pixel_map
from datamodules import ProbeBatch
from evaluation import (
    RobustAccuracy,
    ScoreSummary,
    explanation_scores,
    randomisation_check,
    robust_correctness,
)
from metrics import metric_spec
from metrics.functional import parameter_layers
from report.plan import ReportPlan

#: A cell of the metrics table (:class:`evaluation.ScoreSummary`).
MetricResult = ScoreSummary
#: The accuracy curve (:class:`evaluation.RobustAccuracy`).
AccuracyCurve = RobustAccuracy


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
class ConceptFigureData:
    """What the concept figure (CRP) shows.

    Attributes:
        x: (N, C, H, W) the examples, on the CPU.
        labels: (N,) their labels.
        targets: (N,) the explained classes.
        indices: (N,) their indices in the test split.
        layer: the layer whose channels are the concepts.
        composite: the zennit composite of the LRP rules.
        channels: (N, m) the most relevant channels, most relevant first.
        relevance: (N, m) their relevance r_c.
        total: (N,) the relevance of all the layer's channels.
        heatmaps: (N, m, H, W) the channel-conditional input relevance, summed over the colour channels.
    """

    x: Tensor
    labels: Tensor
    targets: Tensor
    indices: Tensor
    layer: str
    composite: str
    channels: Tensor
    relevance: Tensor
    total: Tensor
    heatmaps: Tensor


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
        seconds: wall time of each part (``metrics/<method>``, ``accuracy``, ``figure``, ``concepts``).
        concepts: the concept figure's data, or None when it is off.
    """

    plan: ReportPlan
    metrics: dict[str, dict[str, MetricResult]]
    randomisation_layers: list[str] | None
    accuracy: AccuracyCurve
    figure: FigureData
    seconds: dict[str, float]
    concepts: ConceptFigureData | None = None


def _batches(examples: ProbeBatch, batch_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + batch_size, len(examples))) for start in range(0, len(examples), batch_size)]


def explanation_metrics(plan: ReportPlan, bar: Any) -> tuple[dict[str, dict[str, MetricResult]], dict[str, float]]:
    """Every method × metric on ``plan.examples``; returns the cells and seconds per method."""
    settings, device = plan.settings, plan.device
    examples = plan.examples.to(device)
    ids = plan.examples.indices.to(device)
    plain = [name for name in plan.metrics if not metric_spec(name).per_layer]
    table: dict[str, dict[str, MetricResult]] = {}
    seconds: dict[str, float] = {}
    for method_name, method in plan.methods.items():
        bar.set_postfix_str(method_name)
        start = time.perf_counter()
        cells: dict[str, MetricResult] = {}
        if plain:
            scores, _ = explanation_scores(
                plan.model, {method_name: method}, plain, examples.x, examples.y, ids, examples.mask,
                examples.spurious_mask, options=plan.metric_options, target=settings.target,
                batch_size=settings.batch_size, progress=lambda _: bar.update(1),
            )  # fmt: skip
            cells.update(scores.compute()[method_name])
        if "randomisation" in plan.metrics:
            options = plan.metric_options["randomisation"]
            check = randomisation_check(
                plan.model, {method_name: method}, examples.x, examples.y, similarities=[options["similarity"]],
                seed=options["seed"], target=settings.target, batch_size=settings.batch_size,
                progress=lambda _: bar.update(1),
            )  # fmt: skip
            cells["randomisation"] = check.compute().cells[method_name][options["similarity"]]
        table[method_name] = {name: cells[name] for name in plan.metrics}
        seconds[f"metrics/{method_name}"] = time.perf_counter() - start
    return table, seconds


def accuracy_curve(plan: ReportPlan, bar: Any) -> RobustAccuracy:
    """Accuracy under every attack of ``plan.attacks`` at every ε of ``plan.eps`` on
    ``plan.accuracy_examples`` (at ε = 0 no attack runs: the clean predictions are used)."""
    examples = plan.accuracy_examples.to(plan.device)

    def progress(description: str) -> None:
        bar.set_postfix_str(description)
        bar.update(1)

    correctness = robust_correctness(
        plan.model, examples.x, examples.y, plan.attacks, plan.eps, plan.settings.batch_size, progress=progress
    )
    return RobustAccuracy.of(correctness)


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


def concept_data(plan: ReportPlan) -> ConceptFigureData | None:
    """The top channels of the concept figure's examples and their conditional heatmaps."""
    if plan.crp is None or not plan.crp_rows:
        return None
    rows = torch.as_tensor(plan.crp_rows, dtype=torch.long)
    x = plan.examples.x[rows].to(plan.device)
    y = plan.examples.y[rows].to(plan.device)
    with torch.no_grad():
        predicted = plan.model(x).argmax(dim=1)
    target = y if plan.settings.target == "label" else predicted
    result = plan.crp(plan.model, x, target, top=plan.settings.crp_channels)
    return ConceptFigureData(
        x.cpu(), y.cpu(), target.cpu(), plan.examples.indices[rows], plan.crp.layer, plan.settings.crp_composite,
        result.channels.cpu(), result.relevance.cpu(), result.total.cpu(), result.heatmaps.sum(dim=2).cpu(),
    )  # fmt: skip


def compute_report(plan: ReportPlan) -> ReportResult:
    """Compute everything ``plan`` describes (progress bars on stderr when ``settings.progress``)."""
    settings = plan.settings
    seconds: dict[str, float] = {}
    disable = not settings.progress
    devices = [plan.device.index or 0] if plan.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(settings.seed)
        n_batches = len(_batches(plan.examples, settings.batch_size))
        passes = int(any(not metric_spec(m).per_layer for m in plan.metrics)) + int("randomisation" in plan.metrics)
        with tqdm(total=len(plan.methods) * n_batches * passes, desc="explanation metrics", unit="batch", disable=disable) as bar:
            table, method_seconds = explanation_metrics(plan, bar)
        seconds.update(method_seconds)
        attacked = sum(1 for e in plan.eps if e > 0)
        start = time.perf_counter()
        n_batches = len(_batches(plan.accuracy_examples, settings.batch_size))
        total = attacked * len(plan.attacks) * n_batches
        with tqdm(total=total, desc="accuracy against eps", unit="batch", disable=disable) as bar:
            curve = accuracy_curve(plan, bar)
        seconds["accuracy"] = time.perf_counter() - start
        start = time.perf_counter()
        figure = figure_data(plan)
        seconds["figure"] = time.perf_counter() - start
        start = time.perf_counter()
        concepts = concept_data(plan)
        if concepts is not None:
            seconds["concepts"] = time.perf_counter() - start
    layers = None
    if "randomisation" in plan.metrics:
        layers = list(reversed(parameter_layers(plan.model, plan.examples.x[:1].to(plan.device))))
    return ReportResult(plan, table, layers, curve, figure, seconds, concepts)
