"""The explanation metric: a torchmetrics ``Metric`` that owns its options and scores a batch.

A metric is one class. It joins the registry by naming itself in its class statement, takes and
checks its own options in ``__init__`` (the defaults live only in that signature), computes
per-example scores with :meth:`ExplanationMetric.score`, and accumulates them with
``update(scores)`` / ``compute()`` in states that reduce across processes::

    class CentreMass(MeanScore, name="centre_mass"):
        higher_is_better = True

        def __init__(self, radius: int = 4, **kwargs: Any) -> None:
            super().__init__(**kwargs)                    # torchmetrics options (sync_on_compute, ...)
            self.radius = check_integer("radius", radius, 1)

        def score(self, inputs: MetricInputs) -> Tensor:  # (B,)
            ...

Scores of one batch share their work through :class:`MetricInputs` (Φ(x), a perturbed input and
its attribution are computed once per batch, whatever the number of metrics that need them).
Undefined scores are NaN: left out of the mean and counted apart (``undefined``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from attributions import AttributionMethod, pixel_map
from common.registry import NameRegistry, init_parameters

# ---------------------------------------------------------------------------------------------
# Option checks: each raises a ValueError that names the option and the values it accepts.


def check_number(name: str, value: Any, low: float | None = None, high: float | None = None, strict: bool = False) -> float:
    """``value`` when it is a number within [low, high] (``low`` excluded with ``strict``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    if ok and low is not None:
        ok = value > low if strict else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bound = f"{'>' if strict else '>='} {low}" if low is not None else "a number"
        extra = f" and <= {high}" if high is not None else ""
        raise ValueError(f"{name} must be a number {bound}{extra}, got {value!r}")
    return value


def check_positive(name: str, value: Any, optional: bool = False) -> Any:
    """``value`` when it is a number > 0 (or None with ``optional``)."""
    if optional and value is None:
        return None
    return check_number(name, value, 0.0, strict=True)


def check_integer(name: str, value: Any, low: int, optional: bool = False) -> Any:
    """``value`` when it is an integer >= ``low`` (or None with ``optional``)."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        none = " or None" if optional else ""
        raise ValueError(f"{name} must be an integer >= {low}{none}, got {value!r}")
    return value


def check_choice(name: str, value: Any, allowed: tuple[Any, ...]) -> Any:
    """``value`` when it is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def check_boolean(name: str, value: Any) -> bool:
    """``value`` when it is True or False."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------
# One batch to score


class MetricInputs:
    """One batch to score, with memoised shared work (Φ(x), perturbed attributions, ...).

    Attributes:
        model: the classifier, taking images in [0, 1].
        x: (B, C, H, W) inputs in [0, 1].
        target: (B,) the explained classes.
        method: the attribution method.
        masks, spurious_masks: ground truth, or None.
        ids: (B,) dataset indices of the examples (random draws follow them), or None.
        attack_criteria: top-k attack key -> every criterion the batch's metrics select by, so
            that one attack run serves all of them.
    """

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        target: Tensor,
        method: AttributionMethod,
        masks: Tensor | None = None,
        spurious_masks: Tensor | None = None,
        ids: Tensor | None = None,
        attribution: Tensor | None = None,
        attack_criteria: Mapping[Any, tuple[str, ...]] | None = None,
    ) -> None:
        self.model, self.x, self.target, self.method = model, x, target, method
        self.masks, self.spurious_masks, self.ids = masks, spurious_masks, ids
        self.attack_criteria = dict(attack_criteria or {})
        self._memo: dict[Any, Any] = {}
        if attribution is not None:
            if attribution.shape != x.shape:
                raise ValueError(f"attribution must be shaped like x {tuple(x.shape)}, got {tuple(attribution.shape)}")
            self._memo["attribution"] = attribution.detach()

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` the first time ``key`` is asked for on this batch, the stored value after."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @property
    def attribution(self) -> Tensor:
        """Φ(x) for the target classes (B, C, H, W)."""
        return self.memo("attribution", lambda: self.method(self.model, self.x, self.target))

    @property
    def maps(self) -> Tensor:
        """Per-pixel maps Σ_c |Φ_c(x)| (B, H, W)."""
        return self.memo("clean_maps", lambda: pixel_map(self.attribution))

    @property
    def signed_maps(self) -> Tensor:
        """Per-pixel relevance Σ_c Φ_c(x) (B, H, W)."""
        return self.memo("signed_maps", lambda: pixel_map(self.attribution, "sum"))


# ---------------------------------------------------------------------------------------------
# The metric


class ExplanationMetric(Metric):
    """Base of every explanation metric: options checked in ``__init__``, per-example
    :meth:`score`, and DDP-safe accumulation (:class:`MeanScore` or :class:`PerLayerScores`).

    A subclass registers itself by its name (``class Infidelity(MeanScore, name="infidelity")``);
    a subclass without a name (a family's base) is not registered.

    Class attributes:
        higher_is_better: the direction of a better explanation (None when it has none).
        requires: ground truth the metric is scored against: "masks" and/or "spurious_masks".
        per_layer: scores are (B, L), one column per layer, rather than (B,).
        registry: every registered metric, by name.
    """

    full_state_update: ClassVar[bool] = False
    is_differentiable: ClassVar[bool] = False
    higher_is_better: bool | None = None
    requires: ClassVar[tuple[str, ...]] = ()
    per_layer: ClassVar[bool] = False
    registry: ClassVar[NameRegistry[ExplanationMetric]] = NameRegistry("metric")
    registered_name: ClassVar[str | None] = None

    def __init_subclass__(cls, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.registered_name = name
        if name is not None:
            ExplanationMetric.registry.register(name, cls)

    @property
    def name(self) -> str:
        """The name the scores are known by (the registered name of the class)."""
        return self.registered_name or type(self).__name__

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The options of ``__init__`` (every named parameter but torchmetrics' ``**kwargs``)."""
        return tuple(p.name for p in init_parameters(cls))

    def options(self) -> dict[str, Any]:
        """Every option with the value this metric uses (shorthands resolved)."""
        return {name: getattr(self, name) for name in self.option_names()}

    def score(self, inputs: MetricInputs) -> Tensor:
        """Per-example scores of one batch: (B,), or (B, L) for a per-layer metric; NaN where undefined."""
        raise NotImplementedError(f"{type(self).__name__} accumulates scores but does not compute them")


class MeanScore(ExplanationMetric):
    """Mean of per-example scores over everything seen, ignoring NaN (counted apart).

    States: ``total`` (sum of defined scores, float64), ``count`` (defined scores) and
    ``undefined`` (NaN scores), all reduced by "sum", so ``compute()`` under DDP equals the value
    on all the data in one process (per-rank averages are never averaged).
    """

    total: Tensor
    count: Tensor
    undefined: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("undefined", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, scores: Tensor) -> None:
        """Add a batch of per-example scores (B,)."""
        if scores.dim() != 1:
            raise ValueError(f"scores must be a (B,) tensor of per-example scores, got shape {tuple(scores.shape)}")
        scores = scores.detach()
        defined = ~torch.isnan(scores)
        self.total += scores[defined].double().sum()
        self.count += defined.sum()
        self.undefined += (~defined).sum()

    def compute(self) -> Tensor:
        """The mean of the defined scores (NaN when there is none)."""
        mean = self.total / self.count.clamp_min(1)
        return torch.where(self.count > 0, mean, torch.full_like(mean, float("nan"))).float()


class PerLayerScores(ExplanationMetric):
    """Per-example rows of per-layer scores (B, L), concatenated; ``compute()`` is the per-layer
    mean over examples, NaN ignored: (L,). State ``scores`` reduces by "cat"."""

    per_layer = True
    higher_is_better: bool | None = False

    scores: list[Tensor]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("scores", default=[], dist_reduce_fx="cat")

    def update(self, scores: Tensor) -> None:
        """Add a batch of per-example, per-layer scores (B, L)."""
        if scores.dim() != 2:
            raise ValueError(f"scores must be a (B, L) tensor of per-layer scores, got shape {tuple(scores.shape)}")
        self.scores.append(scores.detach().float())

    def compute(self) -> Tensor:
        rows = dim_zero_cat(self.scores)  # (N, L)
        return rows.nanmean(dim=0)


def metric_names() -> tuple[str, ...]:
    """Every registered metric name, in registration order: the package's, then any defined
    later (a user's module, a test file) as soon as its class statement has run."""
    return ExplanationMetric.registry.names()
