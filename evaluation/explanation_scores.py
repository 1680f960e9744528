"""Explanation scores, methods × metrics: the one algorithm behind ``ExplanationMonitor``'s
``expl/<method>/<metric>`` values and the metrics table of ``train.py report``.

For each method, batch by batch: Φ(x) of the explained class (the label, or the predicted
class), then every metric of :mod:`metrics` on that batch in one :func:`metrics.compute_metrics`
call (so Φ(x) and perturbed attributions are computed once and shared), the examples' dataset
indices as ``example_ids`` (random draws follow the examples, not the batches). Scores
accumulate in the metrics themselves (torchmetrics, :func:`metrics.build_metric`), which reduce
across processes: a mean over the defined scores, undefined ones (NaN) counted apart.

The per-layer "randomisation" metric is the cascading check of :mod:`evaluation.randomisation`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from attributions import AttributionMethod
from common.modes import module_mode
from metrics import MetricLike, build_metric, compute_metrics, metric_key, metric_spec

Target = Literal["label", "predicted"]
TARGETS: tuple[str, ...] = ("label", "predicted")


@dataclass
class ScoreSummary:
    """One method × metric cell.

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


def optional_number(value: float) -> float | None:
    """``value``, or None for NaN (an undefined mean)."""
    return None if value != value else float(value)


def explained_classes(model: nn.Module, x: Tensor, y: Tensor, target: Target) -> Tensor:
    """The class each example's explanation is of: its label, or the model's prediction (eval mode)."""
    if target == "label":
        return y
    with torch.no_grad(), module_mode(model, "eval"):
        return model(x).argmax(dim=1)


@dataclass
class BatchScores:
    """One method on one batch.

    Attributes:
        attribution: (B, C, H, W) Φ(x) of the explained classes.
        targets: (B,) the explained classes.
        scores: ``{metric: (B,) scores}``, detached.
    """

    attribution: Tensor
    targets: Tensor
    scores: dict[str, Tensor]


def score_batch(
    model: nn.Module,
    method: AttributionMethod,
    metrics: Sequence[MetricLike],
    x: Tensor,
    targets: Tensor,
    example_ids: Tensor | None,
    masks: Tensor | None = None,
    spurious_masks: Tensor | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> BatchScores:
    """Φ(x) for ``targets`` and the scores of every metric in ``metrics`` on one batch."""
    attribution = method(model, x, targets)  # (B, C, H, W), shared by all the metrics
    scores = compute_metrics(
        list(metrics), model, x, targets, method, masks, spurious_masks,
        options={name: o for name, o in (options or {}).items() if name in [metric_key(m) for m in metrics]},
        example_ids=example_ids, attribution=attribution,
    )  # fmt: skip
    return BatchScores(attribution, targets, scores)


class ScoreTable:
    """Per method × metric accumulators (the metrics' torchmetrics states; DDP-safe)."""

    def __init__(self, methods: Sequence[str], metrics: Sequence[MetricLike]) -> None:
        per_layer = [metric_key(name) for name in metrics if metric_spec(name).per_layer]
        if per_layer:
            raise ValueError(f"metrics must not include per-layer metrics {per_layer} here: see evaluation.randomisation")
        self.methods = list(methods)
        self.metrics = [metric_key(name) for name in metrics]
        self.wrappers = {(m, metric_key(name)): build_metric(name) for m in self.methods for name in metrics}

    def to(self, device: torch.device | str) -> ScoreTable:
        self.wrappers = {key: w.to(device) for key, w in self.wrappers.items()}
        return self

    def update(self, method: str, scores: Mapping[str, Tensor]) -> None:
        for name, values in scores.items():
            self.wrappers[(method, name)].update(values)

    def compute(self) -> dict[str, dict[str, ScoreSummary]]:
        """Every cell over everything seen (on every process: a collective call under DDP)."""
        table: dict[str, dict[str, ScoreSummary]] = {}
        for (method, name), wrapper in self.wrappers.items():
            value = float(wrapper.compute())  # reduced across processes
            with wrapper.sync_context():  # the counts too (compute() hands the local states back)
                count, undefined = int(wrapper.count), int(wrapper.undefined)  # type: ignore[arg-type]
            cell = ScoreSummary(optional_number(value), count, undefined)
            table.setdefault(method, {})[name] = cell
        return table

    def reset(self) -> None:
        for wrapper in self.wrappers.values():
            wrapper.reset()


def explanation_scores(
    model: nn.Module,
    methods: Mapping[str, AttributionMethod],
    metrics: Sequence[MetricLike],
    x: Tensor,
    y: Tensor,
    example_ids: Tensor | None,
    masks: Tensor | None = None,
    spurious_masks: Tensor | None = None,
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    target: Target = "label",
    batch_size: int = 128,
    table: ScoreTable | None = None,
    progress: Any = None,
) -> tuple[ScoreTable, dict[str, dict[str, Tensor]]]:
    """Every method × metric on the examples (x, y), batch by batch.

    Args:
        model: the classifier, taking images in [0, 1].
        methods: attribution methods by name.
        metrics: metric names, import paths or objects (not per-layer ones: see
            :mod:`evaluation.randomisation`).
        x, y, example_ids, masks, spurious_masks: the examples, their labels, dataset indices
            (random draws follow them) and ground truth, on the model's device.
        options: ``{metric: {option: value}}``.
        target: explain the "label" or the "predicted" class.
        batch_size: examples per pass.
        table: where to accumulate (a fresh :class:`ScoreTable` when None).
        progress: called with the method's name after each batch.

    Returns:
        The table, and the per-example scores ``{method: {metric: (N,) scores}}`` in order.
    """
    table = table if table is not None else ScoreTable(list(methods), metrics)
    per_example: dict[str, dict[str, list[Tensor]]] = {m: {metric_key(n): [] for n in metrics} for m in methods}
    n = int(x.shape[0])
    for name, method in methods.items():
        for lo in range(0, n, batch_size):
            hi = min(lo + batch_size, n)
            part = lambda t: None if t is None else t[lo:hi]  # noqa: E731
            xb = x[lo:hi]
            targets = explained_classes(model, xb, y[lo:hi], target)
            batch = score_batch(model, method, metrics, xb, targets, part(example_ids), part(masks), part(spurious_masks), options)
            table.update(name, batch.scores)
            for metric, values in batch.scores.items():
                per_example[name][metric].append(values)
            if progress is not None:
                progress(name)
    columns = {m: {k: torch.cat(v) if v else torch.empty(0) for k, v in by.items()} for m, by in per_example.items()}
    return table, columns
