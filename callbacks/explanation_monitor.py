"""ExplanationMonitor: explanation quality on a fixed probe set, every N epochs or steps.

On a seeded probe set drawn once from the validation split, it computes each attribution method
and scores it with the chosen metrics of :mod:`metrics` through
:func:`evaluation.explanation_scores` (the algorithm of ``train.py report``'s table: one
:func:`metrics.compute_metrics` call per batch and method, so Φ(x) and a perturbed input's
attribution are computed once and shared by all the metrics that need them). Scores accumulate
in the metrics' torchmetrics states, which reduce across processes; random draws are keyed
by the examples' dataset indices, so the values do not depend on the batching or on how the
probe set is split over ranks.

Logged at the trainer's global step:

- ``expl/<method>/<metric>``: the mean score over the probe set (undefined scores, e.g. a rank
  correlation of a constant map, left out), e.g. ``expl/saliency/spearman@noise``;
- ``expl/seconds``: wall time of the evaluation (rank zero's, which waits for the others in the
  reduction), rendering included;
- with a W&B logger, in the same history row: ``panels/<method>`` (one image per example,
  x | Φ(x) | mask | x' | Φ(x'), captioned with the label, the prediction and the example's
  scores; see :mod:`callbacks.attribution_panels`) and ``expl/samples`` (a table of every
  probe example's id, label, prediction and scores);
- with any other logger (CSV, TensorBoard): the scalars, and in the logger's log directory
  ``panels/<method>/step<global step>.png`` (one row per example) and
  ``panels/samples_step<global step>.csv`` (the per-example table).

YAML::

    trainer:
      callbacks:
        - class_path: callbacks.ExplanationMonitor
          init_args:
            methods: [saliency, integrated_gradients]
            metrics: [topk_intersection@noise, spearman@noise, relevance_mass]
            metric_options: {spearman@noise: {eps: 0.05}}
            every_n_epochs: 1
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from pytorch_lightning import LightningModule, Trainer
from torch import Tensor, nn

from attributions import AttributionMethod, attribution_name, attribution_names, build_attribution
from callbacks.attribution_panels import PanelRows, check_colormap, grid, save_png, strips, tile_names
from callbacks.observe import observing
from callbacks.probe import PeriodicProbeCallback, check_int, classifier, gather_rows, model_device
from callbacks.run_output import file_directories, log_to_run, wandb_loggers, write_csv
from datamodules import ProbeBatch
from evaluation import ScoreTable, Target, explained_classes, explanation_scores
from metrics import ExplanationRobustness, MetricInputs, build_metric, check_metric, defaults, metric_names, metric_spec

#: Integrated gradients with 8 Gauss–Legendre nodes: on a trained quickstart-like CNN its maps
#: keep a Spearman ρ of 0.98 with 128 nodes (16 nodes: 0.995) at a sixteenth of the cost; IG is
#: the callbacks' most expensive default (benchmarks/RESULTS.md, section 5). 256 interpolated
#: images per pass: on CPU, passes of 1024 images were about twice as slow per image.
DEFAULT_METHOD_OPTIONS: dict[str, dict[str, Any]] = {"integrated_gradients": {"steps": 8, "internal_batch_size": 256}}
#: Robustness of the explanation to uniform noise in the ε-ball: one extra attribution per example.
DEFAULT_METRICS: tuple[str, ...] = defaults.MONITOR_METRICS
#: Added to the defaults when the datamodule has ground-truth masks (nearly free: no forward pass).
DEFAULT_MASK_METRICS: tuple[str, ...] = defaults.MONITOR_MASK_METRICS
#: The perturbation shown in the panels when no ``<similarity>@<perturbation>`` metric is chosen.
FALLBACK_PANEL_METRIC = "spearman@noise"


def _mean(value: float | None) -> float:
    return float("nan") if value is None else value


def _named_error(argument: str, detail: str) -> ValueError:
    return ValueError(f"{argument} {detail}")


def _validated(argument: str, what: str, check: Any) -> Any:
    """``check()``, or a ValueError that names ``argument`` (raised outside the ``except`` so
    that the command line traces it to this callback's option, not to the inner class)."""
    try:
        return check()
    except ValueError as error:
        message = f"{argument} must hold valid options of {what}: {error}"
    raise ValueError(message)


def _registered(argument: str, name: object) -> str:
    """The registered name of method ``name`` (a name or an import path), or a ValueError naming ``argument``."""
    try:
        return attribution_name(name)  # type: ignore[arg-type]
    except ValueError:
        pass
    raise ValueError(f"{argument} must be among {attribution_names()} (or the import path of a registered class), got {name!r}")


def check_methods(methods: Sequence[str] | None, method_options: Mapping[str, Mapping[str, Any]] | None) -> dict[str, AttributionMethod]:
    """Build the attribution methods of ``methods`` with their options (defaults merged in),
    keyed by their registered names.

    Args:
        methods: names or import paths of registered methods; None for the callbacks' default
            list (``attribution_names("callbacks")``).
        method_options: ``{method: {option: value}}``, keyed as in ``methods``.

    Raises:
        ValueError: naming ``methods`` or ``method_options``.
    """
    if methods is None:
        methods = attribution_names("callbacks")
    if isinstance(methods, str) or not methods:
        raise ValueError(f"methods must be a non-empty list of distinct names from {attribution_names()}, got {methods!r}")
    methods = [_registered("methods", name) for name in methods]
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods must be a non-empty list of distinct names from {attribution_names()}, got {methods!r}")
    if method_options is not None and not isinstance(method_options, Mapping):
        raise ValueError(f"method_options must map method names to {{option: value}} mappings, got {method_options!r}")
    options = {_registered("method_options", key) if key not in methods else key: value for key, value in (method_options or {}).items()}
    stray = sorted(set(options) - set(methods))
    if stray:
        raise ValueError(f"method_options must only name methods listed in methods {list(methods)}, got {stray}")
    built = {}
    for name in methods:
        kwargs = {**DEFAULT_METHOD_OPTIONS.get(name, {}), **dict(options.get(name) or {})}
        built[name] = _validated("method_options", f"method {name!r}", lambda n=name, k=kwargs: build_attribution(n, **k))
    return built


@dataclass
class ExplanationScores:
    """What one evaluation of the probe set produced.

    Attributes:
        values: ``{"expl/<method>/<metric>": mean over the whole probe set}`` (reduced over ranks).
        samples: per-example columns over the whole probe set, in probe order ("id", "label",
            "prediction", "<method>/<metric>"); None when not asked for.
        panels: ``{method: PanelRows}`` for the first examples of this rank's share.
        panel_scores: ``{method: {metric: (K,) scores}}`` of those examples.
        predictions: (K,) predicted classes of the panel examples.
        labels: (K,) labels of the panel examples.
        ids: (K,) dataset indices of the panel examples.
    """

    values: dict[str, float]
    samples: dict[str, Tensor] | None = None
    panels: dict[str, PanelRows] = field(default_factory=dict)
    panel_scores: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    predictions: Tensor | None = None
    labels: Tensor | None = None
    ids: Tensor | None = None


class ExplanationMonitor(PeriodicProbeCallback):
    """Explanation metrics and attribution panels on a fixed probe set while training.

    Args:
        methods: attribution methods by name or import path (:func:`attributions.attribution_names`);
            None: the registry's "callbacks" list (saliency and integrated gradients).
        metrics: metric names (:func:`metrics.metric_names`), or import paths of registered
            metric classes (``my_project.metrics.CentreMass``); per-layer "randomisation" belongs
            to :class:`callbacks.SanityCheck`. None: ``topk_intersection@noise`` and
            ``spearman@noise``, plus ``relevance_mass`` and ``pointing_game`` when the
            datamodule has ground-truth masks. A metric that needs masks the datamodule lacks
            fails at setup.
        method_options: ``{method: {option: value}}`` for :func:`attributions.build_attribution`,
            over the defaults (integrated gradients: 8 steps, 256 images per pass).
        metric_options: ``{metric: {option: value}}``, over the registry's defaults
            (:func:`metrics.check_metric`).
        target: explain the "label" (default: evidence for the true class, the same class in
            every evaluation) or the "predicted" class.
        probe_size: examples in the probe set, drawn from the validation split.
        probe_seed: seed of the probe draw.
        batch_size: examples per pass while evaluating.
        every_n_epochs: run after every this many training epochs.
        every_n_steps: run after every this many optimiser steps (set at most one of the two;
            with neither, every epoch).
        panels: examples shown in the attribution panels (0: no panels).
        table: log the per-example table (W&B table, or a CSV file for other loggers).
        colormap: matplotlib colormap of the heat maps.
    """

    def __init__(
        self,
        methods: Sequence[str] | None = None,
        metrics: Sequence[str] | None = None,
        method_options: dict[str, dict[str, Any]] | None = None,
        metric_options: dict[str, dict[str, Any]] | None = None,
        target: Target = "label",
        probe_size: int = 64,
        probe_seed: int = 0,
        batch_size: int = 128,
        every_n_epochs: int | None = None,
        every_n_steps: int | None = None,
        panels: int = 8,
        table: bool = True,
        colormap: str = "inferno",
    ) -> None:
        super().__init__(probe_size, probe_seed, batch_size, every_n_epochs, every_n_steps)
        self.methods = check_methods(methods, method_options)
        if metrics is not None:
            if isinstance(metrics, str) or not metrics or len(set(metrics)) != len(metrics):
                raise ValueError(f"metrics must be a non-empty list of distinct metric names or None, got {metrics!r}")
            for name in metrics:
                try:
                    per_layer = metric_spec(name).per_layer
                except ValueError:
                    per_layer = None
                if per_layer is None:  # raised outside the except: the message names this option
                    raise ValueError(
                        f"metrics must be among {metric_names()} or the import path of a registered class, got {name!r}"
                    )
                if per_layer:
                    raise ValueError(f"metrics must not include {name!r} (per layer): use callbacks.SanityCheck for it")
        candidates = list(metrics) if metrics is not None else [*DEFAULT_METRICS, *DEFAULT_MASK_METRICS]
        stray = sorted(set(metric_options or {}) - set(candidates))
        if stray:
            raise ValueError(f"metric_options must only name metrics that are computed {candidates}, got {stray}")
        self.metric_options: dict[str, dict[str, Any]] = {k: dict(v or {}) for k, v in (metric_options or {}).items()}
        for name, options in self.metric_options.items():
            _validated("metric_options", f"metric {name!r}", lambda n=name, o=options: check_metric(n, **o))
        if target not in ("label", "predicted"):
            raise ValueError(f"target must be one of ('label', 'predicted'), got {target!r}")
        check_int("panels", panels, 0)
        if not isinstance(table, bool):
            raise ValueError(f"table must be true or false, got {table!r}")
        check_colormap(colormap)
        self.requested_metrics = None if metrics is None else list(metrics)
        self.metric_names: list[str] = list(metrics) if metrics is not None else list(DEFAULT_METRICS)
        self.target = target
        self.panels = panels
        self.table = table
        self.colormap = colormap
        self.last: ExplanationScores | None = None

    # -- setup --------------------------------------------------------------------------------

    def check_probe(self, probe: ProbeBatch, datamodule_name: str) -> None:
        if self.requested_metrics is None:  # the defaults adapt to what the data offers
            self.metric_names = list(DEFAULT_METRICS) + (list(DEFAULT_MASK_METRICS) if probe.mask is not None else [])
        for name in self.metric_names:
            for needed in metric_spec(name).requires:
                if getattr(probe, "mask" if needed == "masks" else "spurious_mask") is None:
                    what = (
                        "ground-truth object masks" if needed == "masks" else "spurious-patch masks (SyntheticShapes with spurious_rate > 0)"
                    )
                    raise ValueError(
                        f"metrics must not include {name!r} with {datamodule_name}: it is scored against {what}, "
                        "and the datamodule's probe_batch() provides none"
                    )

    def state_key_fields(self) -> dict[str, Any]:
        return {**super().state_key_fields(), "methods": list(self.methods), "metrics": self.requested_metrics}

    # -- evaluation ---------------------------------------------------------------------------

    def _active_options(self) -> dict[str, dict[str, Any]]:
        # Options of a default metric left out for want of masks are not passed on.
        return {name: options for name, options in self.metric_options.items() if name in self.metric_names}

    def panel_metric(self) -> ExplanationRobustness:
        """The metric whose x' and Φ(x') the panels show: the first robustness metric
        (``<similarity>@<perturbation>``), else uniform noise with its defaults."""
        for name in self.metric_names:
            if issubclass(metric_spec(name).cls, ExplanationRobustness):
                return build_metric(name, **self.metric_options.get(name, {}))  # type: ignore[return-value]
        return build_metric(FALLBACK_PANEL_METRIC)  # type: ignore[return-value]

    def evaluate(self, model: nn.Module, *, samples: bool = False, panels: int = 0) -> ExplanationScores:
        """Score this rank's share of the probe set (see :meth:`use_probe`) with
        :func:`evaluation.explanation_scores` (the algorithm of ``train.py report``'s table).

        A collective call under DDP (every rank calls it): the wrappers reduce and the
        per-example columns are gathered. ``model`` is left as found (modes, ``.grad``, random
        streams).

        Args:
            model: the classifier, taking images in [0, 1].
            samples: also return every probe example's scores (gathered in probe order).
            panels: also return the panel data of this many first examples of the share.
        """
        assert self.probe is not None
        device = model_device(model)
        share = self.share(device)
        probe_total = len(self.probe)
        with observing(model):
            # Fresh states for each evaluation (tensors made in __init__ would be shared between
            # the processes ddp_spawn starts from one pickled callback).
            table = ScoreTable(list(self.methods), self.metric_names).to(device)
            _, columns = explanation_scores(
                model, self.methods, self.metric_names, share.x, share.y, share.indices, share.mask, share.spurious_mask,
                options=self._active_options(), target=self.target, batch_size=self.batch_size, table=table,
            )  # fmt: skip
            cells = table.compute()
            result = ExplanationScores({f"expl/{m}/{name}": _mean(cells[m][name].value) for m in self.methods for name in self.metric_names})
            flat = {f"{m}/{name}": columns[m][name] for m in self.methods for name in self.metric_names}
            k = min(panels, len(share))
            predictions = share.y
            if samples or k > 0:
                with torch.no_grad():
                    predictions = torch.cat(
                        [model(share.x[i : i + self.batch_size]).argmax(dim=1) for i in range(0, len(share), self.batch_size)]
                    )  # (n,)
            if samples:
                local = {"id": share.indices.to(device), "label": share.y, "prediction": predictions, **flat}
                result.samples = {key: gather_rows(column, probe_total).cpu() for key, column in local.items()}
            if k > 0:
                rows = share.slice(0, k)
                targets = explained_classes(model, rows.x, rows.y, self.target)
                result.ids, result.labels, result.predictions = rows.indices.cpu(), rows.y.cpu(), predictions[:k].cpu()
                result.panels = self._panel_rows(model, rows, targets)
                result.panel_scores = {m: {n: flat[f"{m}/{n}"][:k].cpu() for n in self.metric_names} for m in self.methods}
        return result

    def _panel_rows(self, model: nn.Module, rows: ProbeBatch, targets: Tensor) -> dict[str, PanelRows]:
        """Φ(x), x' and Φ(x') of the panel examples: the same x' the robustness metric scored (its
        draws are keyed by the example ids, its attacks deterministic)."""
        metric = self.panel_metric()
        panels = {}
        for name, method in self.methods.items():
            perturbed = metric.perturbed(MetricInputs(model, rows.x, targets, method, ids=rows.indices))
            panels[name] = PanelRows(
                x=rows.x.cpu(),
                attribution=method(model, rows.x, targets).cpu(),
                perturbed=perturbed.cpu(),
                perturbed_attribution=method(model, perturbed, targets).cpu(),
                mask=None if rows.mask is None else rows.mask.cpu(),
            )
        return panels

    # -- the Lightning side -------------------------------------------------------------------

    def run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        assert self.probe is not None
        started = time.perf_counter()
        wandb = bool(wandb_loggers(trainer))
        files = bool(file_directories(trainer))
        self.last = self.evaluate(
            classifier(pl_module, trainer),
            samples=self.table and (wandb or files),
            panels=self.panels if (wandb or files) else 0,
        )
        if trainer.is_global_zero:
            self._publish(trainer, self.last, started)

    def _captions(self, scores: ExplanationScores, method: str) -> list[str]:
        assert scores.ids is not None and scores.labels is not None and scores.predictions is not None
        captions = []
        for i in range(len(scores.ids)):
            parts = [
                f"#{int(scores.ids[i])}",
                f"label {self.class_name(int(scores.labels[i]))}",
                f"pred {self.class_name(int(scores.predictions[i]))}",
            ]
            parts += [f"{name} {float(values[i]):.3f}" for name, values in scores.panel_scores[method].items()]
            captions.append(" · ".join(parts))
        return captions

    def _sample_rows(self, samples: dict[str, Tensor]) -> tuple[list[str], list[list[Any]]]:
        columns = list(samples)
        rows = []
        for i in range(len(samples["id"])):
            row: list[Any] = []
            for key in columns:
                value = samples[key][i]
                if key in ("label", "prediction"):
                    row.append(self.class_name(int(value)))
                elif key == "id":
                    row.append(int(value))
                else:
                    row.append(float(value))
            rows.append(row)
        return columns, rows

    def _publish(self, trainer: Trainer, scores: ExplanationScores, started: float) -> None:
        step = trainer.global_step
        wandb_extras: dict[str, Any] = {}
        images = {m: strips(rows, self.colormap) for m, rows in scores.panels.items()}
        table = self._sample_rows(scores.samples) if scores.samples is not None else None
        if wandb_loggers(trainer):
            import wandb

            for method, method_strips in images.items():
                captions = self._captions(scores, method)
                wandb_extras[f"panels/{method}"] = [wandb.Image(s, caption=c) for s, c in zip(method_strips, captions)]
            if table is not None:
                wandb_extras["expl/samples"] = wandb.Table(columns=table[0], data=table[1])
        for directory in file_directories(trainer):
            for method, method_strips in images.items():
                with_mask = scores.panels[method].mask is not None
                save_png(grid(method_strips, tile_names(with_mask)), directory / "panels" / method / f"step{step:07d}.png")
            if table is not None:
                write_csv(directory / "panels" / f"samples_step{step:07d}.csv", *table)
        scalars = {**scores.values, "expl/seconds": time.perf_counter() - started}
        log_to_run(trainer, scalars, wandb_extras)
