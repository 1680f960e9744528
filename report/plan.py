"""What a report computes, checked in full before any of it runs.

:func:`plan_report` loads the model and the examples and validates every setting; a bad
setting raises :class:`ReportError` naming the option, before anything is computed or written.
:mod:`report.compute` then only computes.

Defaults (each overridable):

- examples: 100 test examples for the metrics table (fewer when the test split is smaller),
  1 000 for the accuracy curve (idem), 8 in the figure; drawn by ``probe_batch(n, seed,
  "test")``, so the smaller sets are subsets of the larger.
- methods (:func:`default_methods`, the registry's "report" list): saliency, input × gradient,
  integrated gradients, SmoothGrad, Grad-CAM, guided backprop, LRP (EpsilonPlusFlat),
  DeepLIFT-Rescale, occlusion, Grad-CAM++, Score-CAM, and the two controls (edge detector,
  uniform noise) that any explanation worth its name should beat; a method class joins
  it unless its class statement says otherwise (:mod:`attributions.base`). SmoothGrad² and
  VarGrad are left out by default: they cost as much as SmoothGrad and repeat its story.
- metrics (:data:`DEFAULT_METRICS`): one per question: is the explanation stable under noise
  and under an attack on the prediction (top-k intersection), sensitive to small input changes
  (max-sensitivity), faithful to the model (infidelity, deletion and insertion AUC), and
  dependent on the learnt weights (cascading randomisation); with ground-truth masks
  (SyntheticShapes) also the localisation metrics, and ``spurious_share`` when the data has a
  spurious patch. The top-k explanation attack (``*@topk_attack``) is left out: 100
  differentiable attribution steps per example make it the costliest metric by far
  (hours for integrated gradients on a CPU); ask for it by name.
- the ε of the robustness metrics is the recipe's evaluation ε (L∞ only; otherwise the
  registry's 0.1), so explanations are tested inside the threat model the model was trained
  for; every ``seed`` option is ``--seed``.
- accuracy against ε: the recipe's evaluation ε (E) times 0, ¼, ½, 1, 1½, 2, under its norm;
  without a recorded attack, L∞ ε ∈ {0, 2, 4, 8, 12, 16}/255. Attacks (:data:`DEFAULT_ATTACKS`),
  side by side at every ε: PGD on the cross-entropy, on the margin (Carlini–Wagner) and on the
  DLR loss (Croce & Hein), each ``attack_steps`` (20) steps of size 2.5 ε / steps (Madry et al.
  2018) from a random start seeded per example, and AutoAttack's fast version (APGD-CE then
  APGD-T, the authors' code); ``--attacks ... autoattack`` adds the standard version (its Square
  Attack runs per example: minutes on a CPU). With 2 classes DLR is undefined and left out.
- concepts (CRP, :mod:`concepts.crp`): for the first ``crp_examples`` (None: up to 4) figure
  examples, the ``crp_channels`` (3) most relevant channels of the model's Grad-CAM layer under
  zennit's EpsilonPlusFlat composite and a heatmap conditioned on each (one extra forward and
  backward pass of ``crp_examples × (crp_channels + 1)`` images: well under a second on a CPU).
- integrated gradients (:data:`DEFAULT_METHOD_OPTIONS`): 32 midpoint-rule points, not the
  class's 100 Gauss–Legendre ones, at a third of the cost: on the PGD-trained quickstart model
  its maps differ from a 256-point midpoint sum by 3.0 % (relative L2, mean over 100 examples;
  7.8 % at most) and its completeness gap is 1.2 % of the mean |f(x) − f(x')|. On these ReLU
  networks the integrand along the path has kinks, so Gauss–Legendre's high order buys nothing:
  at 32 points its error is 3.9 % (13 % at most), at 8 points (the monitoring callbacks') 16 %
  (benchmarks/RESULTS.md; tested in ``tests/test_report.py``).

``--fast`` (:data:`FAST_PROFILE`) changes the defaults above, never an option given explicitly:
the default methods without the costly ones (occlusion and Score-CAM: many passes per image;
``--methods+=occlusion`` puts one back), 8 midpoint points for integrated gradients (maps within
about 12 % of the fine sum), fewer noise
samples in SmoothGrad (5), occlusion's 4 × 4 windows without overlap (stride 4), max-sensitivity (3) and infidelity (10), 10 deletion/insertion steps,
5 PGD steps in ``topk_intersection@pgd``, the accuracy curve on 200 examples at
ε ∈ E·{0, ½, 1, 2} under PGD-10 on the cross-entropy and on the margin
only (no AutoAttack: its robust accuracies are then upper bounds), 4 examples in the figure.
Every section of the report is still written; the report says it was made with ``--fast``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jsonargparse import ArgumentParser
from torch import nn

from attacks import NORMS, PGD, AutoAttack
from attributions import AttributionMethod, attribution_name, attribution_names, attribution_options, build_attribution
from attributions.grad_cam import default_gradcam_layer
from concepts import CRP_COMPOSITES, ConceptRelevance
from datamodules import ImageDataModule, ProbeBatch
from export import CheckpointError
from metrics import check_metric, defaults, metric_names, metric_spec
from report.sources import Source, load_source


def default_methods() -> tuple[str, ...]:
    """The methods a report compares when ``methods`` is not given: the registry's "report" list,
    read when asked, so a method registered since (a project's own) is in it."""
    return attribution_names("report")


DEFAULT_METRICS: tuple[str, ...] = defaults.REPORT_METRICS
MASK_METRICS: tuple[str, ...] = defaults.REPORT_MASK_METRICS
SPURIOUS_METRICS: tuple[str, ...] = defaults.REPORT_SPURIOUS_METRICS
DEFAULT_EXAMPLES = 100
DEFAULT_ACCURACY_EXAMPLES = 1000
EPS_MULTIPLES: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)
FALLBACK_EPS: tuple[float, ...] = (0.0, 2 / 255, 4 / 255, 8 / 255, 12 / 255, 16 / 255)
ATTACK_CHOICES: tuple[str, ...] = ("pgd-ce", "pgd-margin", "pgd-dlr", "autoattack-fast", "autoattack")
DEFAULT_ATTACKS: tuple[str, ...] = ("pgd-ce", "pgd-margin", "pgd-dlr", "autoattack-fast")
DEFAULT_ATTACK_STEPS = 20
DEFAULT_FIGURE_EXAMPLES = 8
#: Figure examples whose concept heatmaps (CRP) are drawn, at most, when crp_examples is None.
DEFAULT_CRP_EXAMPLES = 4
#: Options of the methods the report sets over the classes' defaults (an explicit option wins).
DEFAULT_METHOD_OPTIONS: dict[str, dict[str, Any]] = {"integrated_gradients": {"steps": 32, "rule": "riemann_middle"}}
#: What ``--fast`` changes: each entry replaces the default of the option of that name (an
#: option given explicitly wins; ``method_options`` and ``metric_options`` are merged per key).
FAST_PROFILE: dict[str, Any] = {
    "method_options": {"integrated_gradients": {"steps": 8}, "smoothgrad": {"n_samples": 5}, "occlusion": {"stride": 4}},
    "metric_options": {"topk_intersection@pgd": {"steps": 5}, "max_sensitivity": {"n_samples": 3},
                       "infidelity": {"n_samples": 10}, "deletion_auc": {"steps": 10}, "insertion_auc": {"steps": 10}},
    "attacks": ("pgd-ce", "pgd-margin"),
    "attack_steps": 10,
    "eps_multiples": (0.0, 0.5, 1.0, 2.0),
    "accuracy_examples": 200,
    "figure_examples": 4,
}  # fmt: skip
#: PGD step size as a multiple of ε / steps (Madry et al. 2018 use 2.5 ε / steps).
STEP_SIZE_FACTOR = 2.5
TARGETS: tuple[str, ...] = ("predicted", "label")
Target = Literal["predicted", "label"]


class ReportError(ValueError):
    """A setting the report cannot run with.

    Attributes:
        option: the setting (as named on the command line, without ``--``).
    """

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


@dataclass(kw_only=True)
class ReportSettings:
    """Everything a report can be told: the command line's options, generated from this class
    and its attribute descriptions (see :mod:`cli.report`).

    Attributes:
        ckpt_path: a Lightning checkpoint of RobustClassifier (or give bundle; exactly one of the two).
        bundle: an export bundle folder (instead of ckpt_path).
        out_dir: the report folder to create; it must not exist or be empty unless overwrite.
        overwrite: replace out_dir if it holds files.
        data: the datamodule: None for the one the run recorded, a config node
            ``{class_path, init_args}``, or an :class:`ImageDataModule`.
        num_examples: test examples the metrics score (None: 100, or the test split if smaller).
        batch_size: examples per batch.
        methods: attribution methods, by registered name or import path (default: the registry's
            "report" list).
        method_options: options of the methods, {method: {option: value}} (see
            attributions.build_attribution).
        metrics: explanation metrics (None: robustness, sensitivity, faithfulness and randomisation
            metrics, plus localisation ones when the data has masks).
        metric_options: options of the metrics, {metric: {option: value}} (see metrics.registry).
        target: the class explained: predicted (what the model decided) or label.
        eps: the ε grid of the accuracy curve; 0 is always added (None: the recipe's evaluation ε
            times 0, ¼, ½, 1, 1½, 2; with fast times 0, ½, 1, 2).
        norm: the threat model, linf or l2 (None: the recipe's evaluation norm, else linf).
        attacks: attacks of the accuracy curve (None: pgd-ce, pgd-margin, pgd-dlr, autoattack-fast;
            with fast pgd-ce, pgd-margin; autoattack is the standard version, whose Square Attack takes
            minutes on a CPU).
        attack_steps: steps of each PGD of the accuracy curve (step 2.5 ε / steps; None: 20, 10 with fast).
        attack_restarts: restarts of each PGD (the worst case per example is kept).
        accuracy_examples: test examples of the accuracy curve (None: 1 000, 200 with fast, or the test split if smaller).
        figure_examples: examples shown in the attribution figure (None: 8, 4 with fast).
        crp_examples: first figure examples whose concept heatmaps (CRP) are drawn in concepts.png
            (None: up to 4; 0: no concept figure).
        crp_channels: concepts per example: the most relevant channels of crp_layer.
        crp_layer: module whose channels are the concepts (None: the model's Grad-CAM layer).
        crp_composite: zennit composite of the LRP rules (epsilon_plus_flat, epsilon_plus,
            epsilon_alpha2_beta1, epsilon_alpha2_beta1_flat).
        seed: seed of the example draw, the attacks' starts and every random draw.
        device: auto (CUDA when available), cpu, cuda, cuda:<index>.
        progress: show progress bars.
        verify: check a bundle's files against the sizes and SHA-256 digests in its bundle.json
            before loading it (off only for a bundle changed on purpose).
        fast: a cheaper report with every section: 8-point integrated gradients (32 without), fewer noise
            samples, the accuracy curve on 200 examples at 4 radii under PGD-10 (cross-entropy
            and margin, no AutoAttack: its robust accuracies are upper bounds), 4 figure examples;
            options given explicitly keep their values.
    """

    ckpt_path: str | None = None
    bundle: str | None = None
    out_dir: str
    overwrite: bool = False
    data: dict[str, Any] | ImageDataModule | None = None
    num_examples: int | None = None
    batch_size: int = 64
    methods: Sequence[str] = field(default_factory=default_methods)
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    metrics: Sequence[str] | None = None
    metric_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    target: Target = "predicted"
    eps: Sequence[float] | None = None
    norm: Literal["linf", "l2"] | None = None
    attacks: Sequence[str] | None = None
    attack_steps: int | None = None
    attack_restarts: int = 1
    accuracy_examples: int | None = None
    figure_examples: int | None = None
    crp_examples: int | None = None
    crp_channels: int = 3
    crp_layer: str | None = None
    crp_composite: str = "epsilon_plus_flat"
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    verify: bool = True
    fast: bool = False


@dataclass
class ReportPlan:
    """A checked report, ready to compute.

    Attributes:
        settings: what was asked, with the defaults left open (None) filled in
            (:func:`resolve_defaults`: ``attack_steps``, ``figure_examples``, and the ``--fast`` profile).
        source: the loaded model and what its run recorded.
        model: the classifier on ``device``, in eval mode.
        device: where everything runs.
        datamodule: the datamodule the examples come from.
        data_config: its config node when it was built from one.
        test_size: the number of examples in the test split.
        examples: the examples the metrics score (and the figure draws from).
        accuracy_examples: the examples of the accuracy curve (a superset or subset of ``examples``).
        figure_rows: positions in ``examples`` of the figure's examples.
        methods: built attribution methods by name.
        method_options: the options each was built with (defaults not listed).
        metrics: metric names.
        metric_options: the full options of each metric.
        eps: the ε grid, ascending, starting at 0.
        norm: the threat model of the accuracy curve.
        attacks: the attacks of the accuracy curve (templates, run at every ε).
        crp: the concept relevance of the concept figure, or None when it is off.
        crp_rows: positions in ``examples`` of the concept figure's examples.
    """

    settings: ReportSettings
    source: Source
    model: nn.Module
    device: torch.device
    datamodule: ImageDataModule
    data_config: dict[str, Any] | None
    test_size: int
    examples: ProbeBatch
    accuracy_examples: ProbeBatch
    figure_rows: list[int]
    methods: dict[str, AttributionMethod]
    method_options: dict[str, dict[str, Any]]
    metrics: list[str]
    metric_options: dict[str, dict[str, Any]]
    eps: list[float]
    norm: str
    attacks: list[PGD | AutoAttack] = field(default_factory=list)
    crp: ConceptRelevance | None = None
    crp_rows: list[int] = field(default_factory=list)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_positive(option: str, value: Any) -> None:
    if not _is_int(value) or value < 1:
        raise ReportError(option, f"{option} must be an integer >= 1, got {value!r}")


def _check_names(option: str, names: Sequence[str], allowed: Sequence[str]) -> list[str]:
    names = list(names)
    if not names:
        raise ReportError(option, f"{option} must name at least one of {tuple(allowed)}, got none")
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ReportError(option, f"{option} must be among {tuple(allowed)}, got unknown {unknown}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ReportError(option, f"{option} must name each one once, got {duplicates} more than once")
    return names


def _method_name(name: str) -> str:
    """The registered name of a method given by name or import path (an unknown one as given,
    for :func:`_check_names` to report)."""
    try:
        return attribution_name(name)
    except ValueError:
        return name


def _check_metric_names(names: Sequence[str]) -> list[str]:
    """Metric names, each a registered name or the import path of a registered class (importing
    it registers it, so a metric defined in a user's module can be named by its path)."""
    known = []
    for name in list(names):
        try:
            metric_spec(name)
        except ValueError:
            continue
        known.append(name)
    return _check_names("metrics", names, [*metric_names(), *known])


def _check_option_keys(option: str, options: Mapping[str, Any], chosen: Sequence[str], what: str) -> None:
    if not isinstance(options, Mapping) or not all(isinstance(v, Mapping) for v in options.values()):
        raise ReportError(option, f"{option} must map {what} names to {{option: value}} mappings, got {options!r}")
    stray = sorted(set(options) - set(chosen))
    if stray:
        raise ReportError(option, f"{option} must only name chosen {what}s {tuple(chosen)}, got {stray}")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise ReportError("device", f"device must be 'auto', 'cpu', 'cuda' or 'cuda:<index>', got {name!r}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ReportError("device", f"device must be 'auto' or 'cpu' on this machine (no CUDA), got {name!r}")
    return device


def load_checked_source(ckpt_path: str | None, bundle: str | None, verify: bool = True) -> Source:
    """:func:`report.sources.load_source`, its errors as :class:`ReportError` naming the option."""
    option = "ckpt_path" if ckpt_path is not None else "bundle"
    if (ckpt_path is None) == (bundle is None):
        raise ReportError(
            "ckpt_path",
            "ckpt_path or bundle must be given (exactly one: a Lightning checkpoint or an export bundle folder), "
            f"got ckpt_path={ckpt_path!r}, bundle={bundle!r}",
        )
    try:
        return load_source(ckpt_path, bundle, verify=verify)
    except (FileNotFoundError, CheckpointError, ValueError) as error:
        raise ReportError(option, f"{option} cannot be used: {error}") from error


def _datamodule(settings: ReportSettings, source: Source) -> tuple[ImageDataModule, dict[str, Any] | None]:
    """The datamodule, built from ``settings.data`` or the recorded config node."""
    data = settings.data
    if isinstance(data, ImageDataModule):
        return data, None
    config = data if data is not None else source.data_config
    if config is None:
        raise ReportError(
            "data",
            f"data must be given: {source.path} records no datamodule (pass a recipe, --data configs/<recipe>.yaml, "
            "or --data.class_path with its init_args)",
        )
    parser = ArgumentParser(exit_on_error=False)  # the same type checks and instantiation as train.py's
    parser.add_subclass_arguments(ImageDataModule, "data", required=True)
    try:
        datamodule = parser.instantiate(parser.parse_object({"data": config})).data
    except (argparse.ArgumentError, ValueError, TypeError, OSError) as error:
        cause: BaseException = error  # jsonargparse wraps the constructor's own message
        while cause.__cause__ is not None or cause.__context__ is not None:
            cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
        where = "recorded by the run" if data is None else "as given"
        argument = str(cause).split(" ", 1)[0].strip(":,'")
        if argument in (config.get("init_args") or {}):  # the constructor named its argument
            raise ReportError(f"data.init_args.{argument}", f"{cause} ({config.get('class_path')}, {where})") from error
        raise ReportError("data", f"data must describe a usable datamodule; {config.get('class_path')} ({where}) fails: {cause}") from error
    return datamodule, config


def _check_fit(datamodule: ImageDataModule, source: Source) -> None:
    arch = source.loaded.architecture
    model_facts = (int(arch["num_classes"]), tuple(int(v) for v in arch["input_shape"]))
    data_facts = (int(datamodule.num_classes), tuple(int(v) for v in datamodule.input_shape))
    if model_facts != data_facts:
        raise ReportError(
            "data",
            f"data must match the model ({model_facts[0]} classes, inputs {model_facts[1]}), "
            f"got {type(datamodule).__name__} with {data_facts[0]} classes, inputs {data_facts[1]}",
        )


def _count(option: str, value: int | None, default: int, available: int) -> int:
    if value is None:
        return min(default, available)
    _check_positive(option, value)
    if value > available:
        raise ReportError(option, f"{option} must be <= {available} (the size of the test split), got {value}")
    return value


def _eps_grid(settings: ReportSettings, source: Source) -> tuple[list[float], str]:
    recorded = (source.eval_attack or {}).get("init_args") or {}
    norm = settings.norm or recorded.get("norm") or "linf"
    if norm not in NORMS:
        raise ReportError("norm", f"norm must be one of {NORMS}, got {norm!r}")
    if settings.eps is not None:
        grid = [float(e) for e in settings.eps]
    elif isinstance(recorded.get("eps"), (int, float)) and recorded["eps"] > 0:
        multiples = FAST_PROFILE["eps_multiples"] if settings.fast else EPS_MULTIPLES
        grid = [m * float(recorded["eps"]) for m in multiples]
        if norm == "linf":
            grid = [min(e, 1.0) for e in grid]
    else:
        grid = [FALLBACK_EPS[i] for i in (0, 2, 3, 5)] if settings.fast else list(FALLBACK_EPS)
    for e in grid:
        if not e >= 0 or (norm == "linf" and e > 1):
            bound = "in [0, 1] under linf (pixels lie in [0, 1])" if norm == "linf" else ">= 0"
            raise ReportError("eps", f"eps must be {bound}, got {e}")
    return sorted({0.0, *grid}), norm


def _attacks(settings: ReportSettings, norm: str, num_classes: int) -> list[PGD | AutoAttack]:
    """The attack templates of the accuracy curve, built and checked against the model's classes."""
    if settings.attacks is None:
        names = [n for n in DEFAULT_ATTACKS if not (n == "pgd-dlr" and num_classes < 3)]
        names = list(FAST_PROFILE["attacks"]) if settings.fast else names
    else:
        names = _check_names("attacks", settings.attacks, ATTACK_CHOICES)
    built: list[PGD | AutoAttack] = []
    for name in names:
        attack: PGD | AutoAttack
        if name.startswith("pgd-"):
            # At the reference radius 1; at_eps(ε) scales the step to 2.5 ε / steps.
            attack = PGD(
                eps=1.0, step_size=STEP_SIZE_FACTOR / settings.attack_steps, steps=settings.attack_steps,
                norm=norm, restarts=settings.attack_restarts, seed=settings.seed, loss=name.split("-", 1)[1],  # type: ignore[arg-type]
            )  # fmt: skip
        else:
            attack = AutoAttack(eps=1.0, norm=norm, version="fast" if name == "autoattack-fast" else "standard", seed=settings.seed)  # type: ignore[arg-type]
        try:
            attack.check_num_classes(num_classes)
        except ValueError as error:
            raise ReportError("attacks", f"attacks must run on this {num_classes}-class model; {name!r}: {error}") from error
        built.append(attack)
    return built


def _methods(settings: ReportSettings) -> tuple[dict[str, AttributionMethod], dict[str, dict[str, Any]]]:
    names = _check_names("methods", [_method_name(n) for n in settings.methods], attribution_names())
    if settings.fast and tuple(names) == default_methods():
        # --fast changes defaults only: the costly methods leave the default list, never a given one
        names = [n for n in names if not AttributionMethod.registry.entry(n).cls.costly]
    method_options = settings.method_options
    if isinstance(method_options, Mapping):
        method_options = {_method_name(key): value for key, value in method_options.items()}
    _check_option_keys("method_options", method_options, names, "method")
    built, resolved = {}, {}
    for name in names:
        profile = FAST_PROFILE["method_options"] if settings.fast else {}
        options = {**DEFAULT_METHOD_OPTIONS.get(name, {}), **profile.get(name, {}), **method_options.get(name, {})}
        if "seed" in attribution_options(name) and "seed" not in options:
            options["seed"] = settings.seed  # SmoothGrad's noise, the random control, IG's uniform baseline
        try:
            built[name] = build_attribution(name, **options)
        except (ValueError, TypeError) as error:
            raise ReportError("method_options", f"method_options of {name!r} must be valid: {error}") from error
        resolved[name] = options
    return built, resolved


def _metrics(
    settings: ReportSettings, examples: ProbeBatch, source: Source
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    if settings.metrics is None:
        names = list(DEFAULT_METRICS)
        names += list(MASK_METRICS) if examples.mask is not None else []
        names += list(SPURIOUS_METRICS) if examples.spurious_mask is not None else []
    else:
        names = _check_metric_names(settings.metrics)
    given = {"masks": examples.mask is not None, "spurious_masks": examples.spurious_mask is not None}
    for name in names:
        missing = [need for need in metric_spec(name).requires if not given[need]]
        if missing:
            raise ReportError(
                "metrics",
                f"metrics must not include {name!r} here: it needs {missing[0]}, which the test split of this "
                "dataset does not have (SyntheticShapes has object masks, and spurious-patch masks when "
                "spurious_rate > 0)",
            )
    _check_option_keys("metric_options", settings.metric_options, names, "metric")
    recorded = (source.eval_attack or {}).get("init_args") or {}
    eval_eps = recorded.get("eps") if (recorded.get("norm") or "linf") == "linf" else None
    resolved = {}
    for name in names:
        profile = FAST_PROFILE["metric_options"] if settings.fast else {}
        options = {**profile.get(name, {}), **settings.metric_options.get(name, {})}
        defaults = metric_spec(name).defaults
        if "seed" in defaults and "seed" not in options:
            options["seed"] = settings.seed
        if "eps" in defaults and "eps" not in options and isinstance(eval_eps, (int, float)) and 0 < eval_eps <= 1:
            options["eps"] = float(eval_eps)
        try:
            resolved[name] = check_metric(name, **options)
        except ValueError as error:
            raise ReportError("metric_options", f"metric_options of {name!r} must be valid: {error}") from error
    return names, resolved


def _figure_rows(examples: ProbeBatch, n: int) -> list[int]:
    """``n`` positions of ``examples`` taking the classes in turn (the first of each class, then
    the second, ...), so the figure shows as many classes as it can."""
    labels = examples.y.tolist()
    seen: dict[int, int] = {}
    rank = []
    for label in labels:
        rank.append(seen.get(label, 0))
        seen[label] = rank[-1] + 1
    order = sorted(range(len(labels)), key=lambda i: (rank[i], labels[i], i))
    return sorted(order[:n], key=lambda i: (labels[i], i))


def _check_out_dir(settings: ReportSettings) -> Path:
    out_dir = Path(settings.out_dir)
    if out_dir.exists() and not settings.overwrite and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ReportError("out_dir", f"out_dir {out_dir} exists and is not empty; choose another or pass --overwrite")
    return out_dir


def _concept_relevance(settings: ReportSettings, model: nn.Module, example: torch.Tensor) -> ConceptRelevance | None:
    """The CRP of the concept figure (None when ``crp_examples`` is 0), checked against the model."""
    if settings.crp_examples == 0:
        return None
    if settings.crp_composite not in CRP_COMPOSITES:
        raise ReportError("crp_composite", f"crp_composite must be one of {CRP_COMPOSITES}, got {settings.crp_composite!r}")
    try:
        layer = default_gradcam_layer(model) if settings.crp_layer is None else settings.crp_layer
        crp = ConceptRelevance(layer, settings.crp_composite)
        channels = crp.channel_count(model, example)
    except ValueError as error:
        raise ReportError("crp_layer", f"crp_layer must name a module of the model with (B, K, ...) outputs: {error}") from error
    if settings.crp_channels > channels:
        raise ReportError("crp_channels", f"crp_channels must be at most the {channels} channels of {layer!r}, got {settings.crp_channels}")
    return crp


def resolve_defaults(settings: ReportSettings) -> ReportSettings:
    """``settings`` with the options left open (None) given their default, or with ``fast`` the
    :data:`FAST_PROFILE`'s value; an option given explicitly keeps its value.

    The ε grid and the attack list stay None here (resolved against the recipe in
    :func:`plan_report`), and so are the profile's ``method_options`` / ``metric_options`` and
    example count (merged under the options given, per method or metric and option, so
    ``--fast --method_options.integrated_gradients.steps=32`` keeps the profile's SmoothGrad and
    uses 32 points for integrated gradients).
    """
    if not isinstance(settings.fast, bool):
        raise ReportError("fast", f"fast must be true or false, got {settings.fast!r}")
    fast = FAST_PROFILE if settings.fast else {}
    changes: dict[str, Any] = {
        "attack_steps": fast.get("attack_steps", DEFAULT_ATTACK_STEPS) if settings.attack_steps is None else settings.attack_steps,
        "figure_examples": fast.get("figure_examples", DEFAULT_FIGURE_EXAMPLES) if settings.figure_examples is None else settings.figure_examples,
    }  # fmt: skip
    if settings.crp_examples is None and _is_int(changes["figure_examples"]):
        changes["crp_examples"] = min(DEFAULT_CRP_EXAMPLES, changes["figure_examples"])
    return dataclasses.replace(settings, **changes)


def plan_report(settings: ReportSettings, source: Source | None = None) -> ReportPlan:
    """Load and check everything a report needs; compute nothing, write nothing.

    Args:
        settings: what to compute.
        source: the model already loaded from ``settings.ckpt_path`` / ``settings.bundle``
            (the command line loads it first to learn the recorded datamodule); None loads it.

    Raises:
        ReportError: naming the option, for any setting the report cannot run with (a missing or
            damaged checkpoint, an unknown method or metric, more examples than the test split,
            a dataset that does not fit the model, a masks metric without masks, ...).
    """
    _check_out_dir(settings)
    settings = resolve_defaults(settings)
    for option in ("batch_size", "attack_steps", "attack_restarts", "figure_examples", "crp_channels"):
        _check_positive(option, getattr(settings, option))
    if not _is_int(settings.crp_examples) or not 0 <= settings.crp_examples <= settings.figure_examples:
        raise ReportError(
            "crp_examples", f"crp_examples must be an integer in [0, figure_examples = {settings.figure_examples}], got {settings.crp_examples!r}"
        )
    if settings.crp_layer is not None and not isinstance(settings.crp_layer, str):
        raise ReportError("crp_layer", f"crp_layer must be a module name or None, got {settings.crp_layer!r}")
    if not _is_int(settings.seed) or settings.seed < 0:
        raise ReportError("seed", f"seed must be an integer >= 0, got {settings.seed!r}")
    if settings.target not in TARGETS:
        raise ReportError("target", f"target must be one of {TARGETS}, got {settings.target!r}")
    device = _device(settings.device)
    methods, method_options = _methods(settings)  # names first: cheap, and the commonest typo
    if settings.metrics is not None:
        _check_metric_names(settings.metrics)
    if settings.attacks is not None:
        _check_names("attacks", settings.attacks, ATTACK_CHOICES)
    if source is None:
        source = load_checked_source(settings.ckpt_path, settings.bundle, settings.verify)
    eps, norm = _eps_grid(settings, source)
    attacks = _attacks(settings, norm, int(source.loaded.architecture["num_classes"]))
    datamodule, data_config = _datamodule(settings, source)
    _check_fit(datamodule, source)
    try:
        datamodule.prepare_data()
        test_size = len(datamodule.split_dataset("test"))  # type: ignore[arg-type]
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        raise ReportError("data", f"data must have a readable test split: {error}") from error
    n = _count("num_examples", settings.num_examples, DEFAULT_EXAMPLES, test_size)
    default_accuracy = FAST_PROFILE["accuracy_examples"] if settings.fast else DEFAULT_ACCURACY_EXAMPLES
    n_accuracy = _count("accuracy_examples", settings.accuracy_examples, default_accuracy, test_size)
    if settings.figure_examples > n:
        raise ReportError(
            "figure_examples", f"figure_examples must be <= num_examples ({n}), got {settings.figure_examples}"
        )
    examples = datamodule.probe_batch(n, seed=settings.seed, split="test")
    accuracy_examples = datamodule.probe_batch(n_accuracy, seed=settings.seed, split="test")
    metrics, metric_options = _metrics(settings, examples, source)
    attacked = [m for m in metrics if m.endswith("@topk_attack")]
    fixed = [name for name, method in methods.items() if not method.differentiable]
    if attacked and fixed:
        raise ReportError(
            "metrics",
            f"metrics {attacked} attack the explanation through its gradient, which methods {fixed} do not have; "
            "leave those metrics out or those methods (--methods)",
        )
    model = source.loaded.model.to(device).eval()
    for name, method in methods.items():
        try:
            method.check_model(model)
        except ValueError as error:
            raise ReportError("method_options", f"method_options of {name!r} must fit the model: {error}") from error
    crp = _concept_relevance(settings, model, examples.x[:1].to(device))
    figure_rows = _figure_rows(examples, settings.figure_examples)
    return ReportPlan(
        settings=settings,
        source=source,
        model=model,
        device=device,
        datamodule=datamodule,
        data_config=data_config,
        test_size=test_size,
        examples=examples,
        accuracy_examples=accuracy_examples,
        figure_rows=figure_rows,
        methods=methods,
        method_options=method_options,
        metrics=metrics,
        metric_options=metric_options,
        eps=eps,
        norm=norm,
        attacks=attacks,
        crp=crp,
        crp_rows=figure_rows[: settings.crp_examples] if crp is not None else [],
    )
