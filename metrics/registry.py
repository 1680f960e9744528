"""Explanation metrics by name or as objects: one uniform call for callbacks, reports and notebooks.

    scores = compute_metric("kendall@topk_attack", model, x, y, method, eps=0.3)   # (B,)
    metric = build_metric("kendall@topk_attack")                                  # torchmetrics
    metric.update(scores); metric.compute()

A metric is named by its registered name (:func:`metric_names`, e.g. ``infidelity``,
``spearman@noise``), by the import path of a registered class (``my_project.metrics.CentreMass``:
the module is imported, which registers it), or given as an object
(``ExplanationRobustness(KendallTau(), AttackPerturbation(AutoAttack(eps=0.1)))``). Each class
documents its formula, paper and options (:mod:`metrics.robustness`, :mod:`metrics.sensitivity`,
:mod:`metrics.infidelity`, :mod:`metrics.faithfulness`, :mod:`metrics.randomisation`,
:mod:`metrics.localisation`); the defaults are those of its ``__init__``.

Every metric explains class ``y`` (None: the predicted class) and is computed with the model in
eval mode; random draws depend on (``seed``, ``example_ids``) only, never on the batch layout, so
a probe set split over processes scores as it does in one. :func:`compute_metrics` computes
several metrics and shares their common work (Φ(x), a perturbed input and its attribution, one
top-k attack run for the metrics that differ only in their similarity).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from torch import Tensor, nn

from attributions import AttributionMethod
from attributions.base import check_target, normal_tensor
from metrics.base import ExplanationMetric, MetricInputs
from metrics.functional.common import predicted
from metrics.robustness import ExplanationRobustness, TopKAttack

#: A metric as callers give it: a registered name, the import path of a registered class, or an object.
MetricLike = Union[str, ExplanationMetric]


@dataclass(frozen=True)
class MetricSpec:
    """What a metric name stands for, read from its class.

    Attributes:
        name: the registered name.
        cls: the metric class.
        defaults: every option a caller may set, with its default (from ``cls.__init__``).
        requires: "masks" and/or "spurious_masks" when the metric needs them.
        per_layer: scores are (B, L) rather than (B,).
        higher_is_better: the direction of a better explanation.
    """

    name: str
    cls: type[ExplanationMetric]
    defaults: Mapping[str, Any]
    requires: tuple[str, ...] = field(default=())
    per_layer: bool = False
    higher_is_better: bool | None = None


def metric_spec(name: MetricLike) -> MetricSpec:
    """The spec of a metric name, import path or object (a ValueError names the allowed names)."""
    if isinstance(name, ExplanationMetric):
        cls = type(name)
        return MetricSpec(name.name, cls, name.options(), tuple(cls.requires), cls.per_layer, cls.higher_is_better)
    entry = ExplanationMetric.registry.entry(name)
    defaults = entry.defaults()
    cls = entry.cls
    return MetricSpec(entry.name, cls, defaults, tuple(cls.requires), cls.per_layer, cls.higher_is_better)


def _build(name: str, options: Mapping[str, Any], metric_kwargs: Mapping[str, Any] | None = None) -> ExplanationMetric:
    entry = ExplanationMetric.registry.entry(name)
    allowed = entry.options()
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"options of metric {name!r} must be among {allowed}, got {unknown}")
    return entry.cls(**entry.fixed, **options, **dict(metric_kwargs or {}))


def check_metric(name: MetricLike, **options: Any) -> dict[str, Any]:
    """Validate a metric and its options without computing anything (for constructors).

    Returns:
        The full options: the defaults updated with ``options``, shorthands resolved (``k`` of
        the top-k attack sets ``k_attack`` and ``k_score``).

    Raises:
        ValueError: unknown name or option (naming the allowed ones), or a bad option value.
    """
    return _metric(name, options).options()


def build_metric(name: MetricLike, **kwargs: Any) -> ExplanationMetric:
    """A fresh metric ``name`` (with empty states) that accumulates its scores.

    ``kwargs`` are the metric's options and ``torchmetrics.Metric``'s (``sync_on_compute``,
    ``dist_sync_fn``, ...). A metric object gives a fresh copy of itself.
    """
    if isinstance(name, ExplanationMetric):
        if kwargs:
            raise ValueError(f"options of metric {name.name!r} are set on the object; got {sorted(kwargs)}")
        copy = name.clone()
        copy.reset()
        return copy
    entry = ExplanationMetric.registry.entry(name)
    options = {k: v for k, v in kwargs.items() if k in entry.options()}
    return _build(name, options, {k: v for k, v in kwargs.items() if k not in options})


def _metric(name: MetricLike, options: Mapping[str, Any]) -> ExplanationMetric:
    if isinstance(name, ExplanationMetric):
        if options:
            raise ValueError(f"options of metric {name.name!r} are set on the object; got {sorted(options)}")
        return name
    return _build(name, options)


def metric_key(name: MetricLike) -> str:
    """The key a metric's scores are returned under: the name as given, or an object's name."""
    return name.name if isinstance(name, ExplanationMetric) else name


def _attack_plan(metrics: Sequence[ExplanationMetric]) -> dict[Any, tuple[str, ...]]:
    """Top-k attack runs of one call: attack key -> the criteria of every metric that shares it."""
    plan: dict[Any, tuple[str, ...]] = {}
    for metric in metrics:
        if isinstance(metric, ExplanationRobustness) and isinstance(metric.perturbation, TopKAttack):
            key = metric.perturbation.attack_key()
            if metric.criterion not in plan.get(key, ()):
                plan[key] = (*plan.get(key, ()), metric.criterion)
    return plan


def compute_metrics(
    names: Sequence[MetricLike],
    model: nn.Module,
    x: Tensor,
    y: Tensor | None,
    method: AttributionMethod,
    masks: Tensor | None = None,
    spurious_masks: Tensor | None = None,
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    example_ids: Tensor | None = None,
    attribution: Tensor | None = None,
) -> dict[str, Tensor]:
    """Several metrics on one batch, sharing Φ(x) and perturbed attributions between them.

    Args:
        names: metrics: registered names (:func:`metric_names`), import paths of registered
            classes, or metric objects.
        model: the classifier, taking images in [0, 1].
        x: (B, C, H, W) inputs in [0, 1].
        y: (B,) classes to explain (labels), or None for the predicted classes. With labels,
            the top-k attack skips the examples the model misclassifies (their scores are NaN).
        method: the attribution method.
        masks: (B, 1, H, W) or (B, H, W) ground-truth object masks (localisation metrics).
        spurious_masks: masks of a spurious artifact (``spurious_share``).
        options: per-metric options, ``{name: {option: value}}`` (objects carry their own).
        example_ids: (B,) dataset indices of the examples: random draws then follow the
            examples (equal scores whatever the batching); None uses positions in the batch.
        attribution: Φ(x) for the same classes when already computed.

    Returns:
        {name: (B,) scores}, or (B, L) for a per-layer metric ("randomisation"); detached. An
        object's scores are under its ``name``.
    """
    options = dict(options or {})
    keys = [metric_key(name) for name in names]
    stray = sorted(set(options) - {name for name in names if isinstance(name, str)})
    if stray:
        raise ValueError(f"options must only name requested metrics {tuple(keys)}, got {stray}")
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"metrics must have distinct names, got {duplicates} more than once")
    metrics = [_metric(name, options.get(name, {}) if isinstance(name, str) else {}) for name in names]
    for key, metric in zip(keys, metrics):
        for needed, given in (("masks", masks), ("spurious_masks", spurious_masks)):
            if needed in metric.requires and given is None:
                raise ValueError(f"{needed} must be given for metric {key!r} (ground truth it is scored against)")
    check_target(x, y)
    x = normal_tensor(x)
    target = predicted(model, x) if y is None else normal_tensor(y).long()
    inputs = MetricInputs(model, x, target, method, masks, spurious_masks, example_ids, attribution, _attack_plan(metrics))
    return {key: metric.score(inputs).detach() for key, metric in zip(keys, metrics)}


def compute_metric(
    name: MetricLike,
    model: nn.Module,
    x: Tensor,
    y: Tensor | None,
    method: AttributionMethod,
    masks: Tensor | None = None,
    spurious_masks: Tensor | None = None,
    *,
    example_ids: Tensor | None = None,
    attribution: Tensor | None = None,
    **options: Any,
) -> Tensor:
    """Per-example scores (B,) of one metric ((B, L) for a per-layer one).

    See :func:`compute_metrics` for the arguments; ``options`` are the metric's own (its
    class's ``__init__`` arguments, listed in ``metric_spec(name).defaults``).
    """
    if isinstance(name, ExplanationMetric):
        if options:
            raise ValueError(f"options of metric {name.name!r} are set on the object; got {sorted(options)}")
        return compute_metrics([name], model, x, y, method, masks, spurious_masks, example_ids=example_ids, attribution=attribution)[name.name]
    return compute_metrics(
        [name], model, x, y, method, masks, spurious_masks,
        options={name: options}, example_ids=example_ids, attribution=attribution,
    )[name]  # fmt: skip
