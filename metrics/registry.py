"""Explanation metrics by name: one uniform call for callbacks, reports and notebooks.

    scores = compute_metric("kendall@topk_attack", model, x, y, method, eps=0.3)   # (B,)
    wrapper = build_metric("kendall@topk_attack")                                 # torchmetrics
    wrapper.update(scores); wrapper.compute()

Names (:data:`METRIC_NAMES`):

- robustness of the explanation, ``<similarity>@<perturbation>``: similarity one of
  topk_intersection, spearman, kendall, cosine; perturbation one of noise (uniform in the ε-ball),
  pgd (PGD on the classifier), topk_attack (Ghorbani et al.'s attack on the explanation). The
  perturbation is part of the name so that a logged key says what was measured.
  Options: ``eps`` (0.1), ``k`` (None: 100 per 28 × 28 pixels); noise: ``seed``; pgd: ``steps``
  (10), ``step_size`` (None: 2.5 ε / steps); topk_attack: ``steps`` (100), ``step_size`` (0.01),
  ``softplus_beta`` (10), ``k_attack`` (the top set attacked) and ``k_score`` (the k scored;
  ``k`` sets both), ``criterion`` (None: the metric's own similarity selects the kept iterate;
  "kendall" reproduces Chen et al.'s tables), ``stop_at_label_flip`` (False; True: the older
  rule that stops an example at its first label flip). With ``y`` given, examples the model
  misclassifies are not attacked and score NaN (counted as undefined by the wrappers); metrics
  of one call that differ only in their similarity share one attack run.
  :func:`attacks.chen_protocol` gives Chen et al.'s settings per dataset.
- ``max_sensitivity``, ``avg_sensitivity``: Captum's relative form (r = 0.02, n = 10);
  ``max_sensitivity_abs``, ``avg_sensitivity_abs``: Yeh et al.'s absolute form (r = 0.2, n = 50).
  Options ``radius``, ``n_samples``, ``seed``.
- ``local_lipschitz`` (``radius`` 0.1, ``n_samples`` 20, ``seed``), ``infidelity`` (``sigma`` 0.1,
  ``n_samples`` 50, ``normalize`` True, ``seed``).
- ``deletion_auc``, ``insertion_auc`` (``steps`` 20, ``baseline`` zero / blur, ``blur_sigma`` 5,
  ``seed``), ``sensitivity_n`` (``n`` None: 10 % of the pixels, ``n_subsets`` 100, ``baseline``
  zero, ``seed``).
- ``randomisation``: cascading model-parameter randomisation; returns (B, L), one column per
  re-initialised layer, top layer first (the last column: the whole network randomised); the
  layer names come from :func:`metrics.functional.parameter_layers`. Options ``similarity``
  ("spearman", "ssim" or "hog": Adebayo et al.'s three; "hog" needs scikit-image), ``seed``.
- with ``masks``: ``pointing_game`` (``tolerance`` 0), ``relevance_mass``, ``relevance_rank``
  (``seed``); with ``spurious_masks``: ``spurious_share``.

Every metric explains class ``y`` (None: the predicted class) and is computed with the model in
eval mode; random draws depend on (``seed``, ``example_ids``) only, never on the batch layout, so
a probe set split over processes scores as it does in one. :func:`compute_metrics` computes
several metrics and shares their common work (Φ(x), a perturbed input and its attribution).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from attributions import AttributionMethod, pixel_map
from attributions.base import check_target, normal_tensor
from metrics import wrappers
from metrics.functional import faithfulness, localisation, sensitivity
from metrics.functional.common import predicted
from metrics.functional.infidelity import infidelity
from metrics.functional.randomisation import RANDOMISATION_SIMILARITIES, cascading_randomisation
from metrics.functional.robustness import PERTURBATIONS, SIMILARITIES, map_similarity, perturb, topk_attack
from metrics.functional.similarity import require_hog

# ---------------------------------------------------------------------------------------------
# Inputs shared by the metrics of one call


class MetricInputs:
    """One batch to score, with memoised shared work (Φ(x), perturbed attributions, ...)."""

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        target: Tensor,
        method: AttributionMethod,
        masks: Tensor | None,
        spurious_masks: Tensor | None,
        ids: Tensor | None,
        attribution: Tensor | None,
        attack_criteria: Mapping[Any, tuple[str, ...]] | None = None,
    ) -> None:
        self.model, self.x, self.target, self.method = model, x, target, method
        self.masks, self.spurious_masks, self.ids = masks, spurious_masks, ids
        #: top-k attack options (as a key) -> every criterion the call's metrics select by
        self.attack_criteria = dict(attack_criteria or {})
        self._memo: dict[Any, Any] = {}
        if attribution is not None:
            if attribution.shape != x.shape:
                raise ValueError(f"attribution must be shaped like x {tuple(x.shape)}, got {tuple(attribution.shape)}")
            self._memo["attribution"] = attribution.detach()

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @property
    def attribution(self) -> Tensor:
        """Φ(x) for the target classes."""
        return self.memo("attribution", lambda: self.method(self.model, self.x, self.target))


# ---------------------------------------------------------------------------------------------
# Option validation


def _number(low: float | None = None, high: float | None = None, strict: bool = False) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
        if ok and low is not None:
            ok = value > low if strict else value >= low
        if ok and high is not None:
            ok = value <= high
        if not ok:
            bound = f"{'>' if strict else '>='} {low}" if low is not None else "a number"
            extra = f" and <= {high}" if high is not None else ""
            raise ValueError(f"{name} must be a number {bound}{extra}, got {value!r}")

    return check


def _integer(low: int, optional: bool = False) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if optional and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            none = " or None" if optional else ""
            raise ValueError(f"{name} must be an integer >= {low}{none}, got {value!r}")

    return check


def _choice(*allowed: Any) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")

    return check


def _boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")


def _optional_positive(name: str, value: Any) -> None:
    if value is not None:
        _number(0.0, strict=True)(name, value)


def _randomisation_similarity(name: str, value: Any) -> None:
    _choice(*RANDOMISATION_SIMILARITIES)(name, value)
    if value == "hog":
        require_hog()


_CHECKS: dict[str, Callable[[str, Any], None]] = {
    "eps": _number(0.0, 1.0),
    "k": _integer(1, optional=True),
    "k_attack": _integer(1, optional=True),
    "k_score": _integer(1, optional=True),
    "criterion": _choice(None, *SIMILARITIES),
    "stop_at_label_flip": _boolean,
    "seed": _integer(0),
    "steps": _integer(1),
    "step_size": _optional_positive,
    "softplus_beta": _number(0.0, strict=True),
    "radius": _number(0.0, strict=True),
    "sigma": _number(0.0, strict=True),
    "n_samples": _integer(1),
    "normalize": _boolean,
    "baseline": _choice(*faithfulness.REMOVALS),
    "blur_sigma": _number(0.0, strict=True),
    "n": _integer(1, optional=True),
    "n_subsets": _integer(2),
    "similarity": _randomisation_similarity,
    "tolerance": _integer(0),
}


# ---------------------------------------------------------------------------------------------
# The metrics


@dataclass(frozen=True)
class MetricSpec:
    """How to compute one named metric.

    Attributes:
        name: the registry name.
        compute: (inputs, options) -> (B,) scores, or (B, L) for per-layer metrics.
        defaults: every accepted option with its default.
        wrapper: the torchmetrics class that accumulates its scores.
        requires: "masks" and/or "spurious_masks" when the metric needs them.
        resolve: (name, full options) -> options with shorthands resolved and cross-option
            rules checked (a ValueError names the options).
    """

    name: str
    compute: Callable[[MetricInputs, dict[str, Any]], Tensor]
    defaults: Mapping[str, Any]
    wrapper: type[wrappers.MeanScore] | type[wrappers.PerLayerScores]
    requires: tuple[str, ...] = field(default=())
    resolve: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None

    @property
    def higher_is_better(self) -> bool | None:
        return self.wrapper.higher_is_better


_ROBUSTNESS_DEFAULTS: dict[str, dict[str, Any]] = {
    "noise": {"eps": 0.1, "k": None, "seed": 0},
    "pgd": {"eps": 0.1, "k": None, "steps": 10, "step_size": None},
    "topk_attack": {
        "eps": 0.1,
        "k": None,
        "k_attack": None,
        "k_score": None,
        "steps": 100,
        "step_size": 0.01,
        "softplus_beta": 10.0,
        "criterion": None,
        "stop_at_label_flip": False,
    },
}
_SIMILARITY_WRAPPERS: dict[str, type[wrappers.MeanScore]] = {
    "topk_intersection": wrappers.TopKIntersection,
    "spearman": wrappers.SpearmanCorrelation,
    "kendall": wrappers.KendallTau,
    "cosine": wrappers.CosineSimilarity,
}


def _topk_attack_key(options: Mapping[str, Any]) -> tuple[Any, ...]:
    """What determines the top-k attack's trajectory and scores: every option but the criterion
    (``k`` resolved into ``k_attack`` and ``k_score``)."""
    return ("topk_attack", tuple(sorted((k, v) for k, v in options.items() if k not in ("criterion", "k"))))


def _topk_attack_criterion(similarity: str, options: Mapping[str, Any]) -> str:
    return options["criterion"] or similarity


def _resolve_topk_k(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``k`` as shorthand for ``k_attack`` and ``k_score`` (an error when mixed with them)."""
    if options["k"] is None:
        return options
    if options["k_attack"] is not None or options["k_score"] is not None:
        raise ValueError(
            f"options of metric {name!r}: k sets both k_attack and k_score; give either k, or k_attack and/or k_score"
        )
    return {**options, "k_attack": options["k"], "k_score": options["k"]}


def _topk_attack_metric(similarity: str) -> Callable[[MetricInputs, dict[str, Any]], Tensor]:
    def compute(inputs: MetricInputs, options: dict[str, Any]) -> Tensor:
        key = _topk_attack_key(options)
        criterion = _topk_attack_criterion(similarity, options)
        criteria = inputs.attack_criteria.get(key, (criterion,))
        attack_options = dict(key[1])
        result = inputs.memo(
            key,
            lambda: topk_attack(inputs.model, inputs.x, inputs.target, inputs.method, criteria, **attack_options),
        )
        selection = result.selections[criterion]
        if criterion == similarity:  # the criterion's value at its own iterate is the score
            return selection.score
        maps = inputs.memo(
            ("topk_attack_maps", key, criterion),
            lambda: pixel_map(inputs.method(inputs.model, selection.x_adv, inputs.target)),
        )
        clean = inputs.memo("clean_maps", lambda: pixel_map(inputs.attribution))
        scores = map_similarity(clean, maps, similarity, options["k_score"])  # type: ignore[arg-type]
        return scores.masked_fill(~result.attacked, float("nan"))

    return compute


def _robustness(similarity: str, perturbation: str) -> Callable[[MetricInputs, dict[str, Any]], Tensor]:
    if perturbation == "topk_attack":
        return _topk_attack_metric(similarity)

    def compute(inputs: MetricInputs, options: dict[str, Any]) -> Tensor:
        perturb_options = dict(options)
        perturb_options.pop("k")  # k only changes which pixels are compared, not x'
        key = ("perturbed_maps", perturbation, tuple(sorted(perturb_options.items())))

        def perturbed_maps() -> Tensor:
            x_adv = perturb(
                inputs.model, inputs.x, inputs.target, inputs.method, perturbation, ids=inputs.ids, **perturb_options  # type: ignore[arg-type]
            )
            return pixel_map(inputs.method(inputs.model, x_adv, inputs.target))

        clean = inputs.memo("clean_maps", lambda: pixel_map(inputs.attribution))
        return map_similarity(clean, inputs.memo(key, perturbed_maps), similarity, options["k"])  # type: ignore[arg-type]

    return compute


def _sensitivity(reduction: str, relative: bool) -> Callable[[MetricInputs, dict[str, Any]], Tensor]:
    def compute(inputs: MetricInputs, options: dict[str, Any]) -> Tensor:
        key = ("sensitivity", relative, tuple(sorted(options.items())))
        samples = inputs.memo(
            key,
            lambda: sensitivity.sensitivity_samples(
                inputs.model, inputs.x, inputs.target, inputs.method, relative=relative,
                attribution=inputs.attribution, ids=inputs.ids, **options,
            ),
        )  # (B, n)
        return samples.max(dim=1).values if reduction == "max" else samples.mean(dim=1)

    return compute


def _local_lipschitz(inputs: MetricInputs, options: dict[str, Any]) -> Tensor:
    return sensitivity.local_lipschitz(
        inputs.model, inputs.x, inputs.target, inputs.method, attribution=inputs.attribution, ids=inputs.ids, **options
    )


def _infidelity(inputs: MetricInputs, options: dict[str, Any]) -> Tensor:
    return infidelity(
        inputs.model, inputs.x, inputs.target, inputs.method, attribution=inputs.attribution, ids=inputs.ids, **options
    )


def _curve(mode: str) -> Callable[[MetricInputs, dict[str, Any]], Tensor]:
    def compute(inputs: MetricInputs, options: dict[str, Any]) -> Tensor:
        curve = faithfulness.perturbation_curve(
            inputs.model, inputs.x, inputs.target, inputs.attribution, mode, ids=inputs.ids, **options  # type: ignore[arg-type]
        )
        return faithfulness.curve_auc(curve)

    return compute


def _sensitivity_n(inputs: MetricInputs, options: dict[str, Any]) -> Tensor:
    return faithfulness.sensitivity_n(inputs.model, inputs.x, inputs.target, inputs.attribution, ids=inputs.ids, **options)


def _randomisation(inputs: MetricInputs, options: dict[str, Any]) -> Tensor:
    hog = options["similarity"] == "hog"
    result = inputs.memo(
        ("randomisation", options["seed"], hog),
        lambda: cascading_randomisation(
            inputs.model, inputs.x, inputs.target, inputs.method, inputs.attribution, seed=options["seed"], hog=hog
        ),
    )
    return getattr(result, options["similarity"])


def _signed_maps(inputs: MetricInputs) -> Tensor:
    return inputs.memo("signed_maps", lambda: pixel_map(inputs.attribution, "sum"))


def _pointing_game(inputs: MetricInputs, options: dict[str, Any]) -> Tensor:
    return localisation.pointing_game(_signed_maps(inputs), inputs.masks, **options)  # type: ignore[arg-type]


def _relevance_mass(inputs: MetricInputs, options: dict[str, Any]) -> Tensor:
    return localisation.relevance_mass(_signed_maps(inputs), inputs.masks)  # type: ignore[arg-type]


def _relevance_rank(inputs: MetricInputs, options: dict[str, Any]) -> Tensor:
    return localisation.relevance_rank(_signed_maps(inputs), inputs.masks, ids=inputs.ids, **options)  # type: ignore[arg-type]


def _spurious_share(inputs: MetricInputs, options: dict[str, Any]) -> Tensor:
    maps = inputs.memo("clean_maps", lambda: pixel_map(inputs.attribution))
    return localisation.spurious_share(maps, inputs.spurious_masks)  # type: ignore[arg-type]


def _specs() -> dict[str, MetricSpec]:
    specs: list[MetricSpec] = []
    for perturbation in PERTURBATIONS:
        for similarity in SIMILARITIES:
            specs.append(
                MetricSpec(
                    f"{similarity}@{perturbation}",
                    _robustness(similarity, perturbation),
                    _ROBUSTNESS_DEFAULTS[perturbation],
                    _SIMILARITY_WRAPPERS[similarity],
                    resolve=_resolve_topk_k if perturbation == "topk_attack" else None,
                )
            )
    relative = {"radius": 0.02, "n_samples": 10, "seed": 0}
    absolute = {"radius": 0.2, "n_samples": 50, "seed": 0}
    curve = {"steps": 20, "blur_sigma": 5.0, "seed": 0}
    specs += [
        MetricSpec("max_sensitivity", _sensitivity("max", True), relative, wrappers.MaxSensitivity),
        MetricSpec("avg_sensitivity", _sensitivity("mean", True), relative, wrappers.AvgSensitivity),
        MetricSpec("max_sensitivity_abs", _sensitivity("max", False), absolute, wrappers.MaxSensitivity),
        MetricSpec("avg_sensitivity_abs", _sensitivity("mean", False), absolute, wrappers.AvgSensitivity),
        MetricSpec("local_lipschitz", _local_lipschitz, {"radius": 0.1, "n_samples": 20, "seed": 0}, wrappers.LocalLipschitz),
        MetricSpec(
            "infidelity", _infidelity, {"sigma": 0.1, "n_samples": 50, "normalize": True, "seed": 0}, wrappers.Infidelity
        ),
        MetricSpec("deletion_auc", _curve("deletion"), {**curve, "baseline": "zero"}, wrappers.DeletionAUC),
        MetricSpec("insertion_auc", _curve("insertion"), {**curve, "baseline": "blur"}, wrappers.InsertionAUC),
        MetricSpec(
            "sensitivity_n", _sensitivity_n, {"n": None, "n_subsets": 100, "baseline": "zero", "seed": 0}, wrappers.SensitivityN
        ),
        MetricSpec("randomisation", _randomisation, {"similarity": "spearman", "seed": 0}, wrappers.ModelRandomisation),
        MetricSpec("pointing_game", _pointing_game, {"tolerance": 0}, wrappers.PointingGame, ("masks",)),
        MetricSpec("relevance_mass", _relevance_mass, {}, wrappers.RelevanceMass, ("masks",)),
        MetricSpec("relevance_rank", _relevance_rank, {"seed": 0}, wrappers.RelevanceRank, ("masks",)),
        MetricSpec("spurious_share", _spurious_share, {}, wrappers.SpuriousShare, ("spurious_masks",)),
    ]
    return {spec.name: spec for spec in specs}


METRICS: dict[str, MetricSpec] = _specs()
METRIC_NAMES: tuple[str, ...] = tuple(METRICS)
PER_LAYER_METRICS: tuple[str, ...] = ("randomisation",)


# ---------------------------------------------------------------------------------------------
# Public calls


def metric_spec(name: str) -> MetricSpec:
    """The spec of metric ``name`` (raises a ValueError naming the allowed values)."""
    if name not in METRICS:
        raise ValueError(f"metric must be one of {METRIC_NAMES}, got {name!r}")
    return METRICS[name]


def check_metric(name: str, **options: Any) -> dict[str, Any]:
    """Validate a metric name and its options without computing anything (for constructors).

    Returns:
        The full options: the defaults updated with ``options``.

    Raises:
        ValueError: unknown name or option (naming the allowed ones), or a bad option value.
    """
    spec = metric_spec(name)
    unknown = sorted(set(options) - set(spec.defaults))
    if unknown:
        raise ValueError(f"options of metric {name!r} must be among {tuple(spec.defaults)}, got {unknown}")
    full = {**spec.defaults, **options}
    for option, value in options.items():
        _CHECKS[option](option, value)
    return spec.resolve(name, full) if spec.resolve is not None else full


def build_metric(name: str, **kwargs: Any) -> wrappers.MeanScore | wrappers.PerLayerScores:
    """The torchmetrics wrapper that accumulates the scores of metric ``name``.

    ``kwargs`` go to ``torchmetrics.Metric`` (``sync_on_compute``, ``dist_sync_fn``, ...).
    """
    return metric_spec(name).wrapper(**kwargs)


def _attack_plan(names: Sequence[str], resolved: Mapping[str, Mapping[str, Any]]) -> dict[Any, tuple[str, ...]]:
    """Top-k attack runs of one call: options key -> the criteria of every metric that shares it."""
    plan: dict[Any, tuple[str, ...]] = {}
    for name in names:
        similarity, _, perturbation = name.partition("@")
        if perturbation != "topk_attack":
            continue
        key = _topk_attack_key(resolved[name])
        criterion = _topk_attack_criterion(similarity, resolved[name])
        if criterion not in plan.get(key, ()):
            plan[key] = (*plan.get(key, ()), criterion)
    return plan


def compute_metrics(
    names: Sequence[str],
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
        names: metric names from :data:`METRIC_NAMES`.
        model: the classifier, taking images in [0, 1].
        x: (B, C, H, W) inputs in [0, 1].
        y: (B,) classes to explain (labels), or None for the predicted classes. With labels,
            the top-k attack skips the examples the model misclassifies (their scores are NaN).
        method: the attribution method.
        masks: (B, 1, H, W) or (B, H, W) ground-truth object masks (localisation metrics).
        spurious_masks: masks of a spurious artifact (``spurious_share``).
        options: per-metric options, ``{name: {option: value}}``.
        example_ids: (B,) dataset indices of the examples: random draws then follow the
            examples (equal scores whatever the batching); None uses positions in the batch.
        attribution: Φ(x) for the same classes when already computed.

    Returns:
        {name: (B,) scores}, or (B, L) for "randomisation"; detached.
    """
    options = dict(options or {})
    stray = sorted(set(options) - set(names))
    if stray:
        raise ValueError(f"options must only name requested metrics {tuple(names)}, got {stray}")
    resolved = {name: check_metric(name, **options.get(name, {})) for name in names}
    for name in names:
        for needed, given in (("masks", masks), ("spurious_masks", spurious_masks)):
            if needed in metric_spec(name).requires and given is None:
                raise ValueError(f"{needed} must be given for metric {name!r} (ground truth it is scored against)")
    check_target(x, y)
    x = normal_tensor(x)
    target = predicted(model, x) if y is None else normal_tensor(y).long()
    inputs = MetricInputs(
        model, x, target, method, masks, spurious_masks, example_ids, attribution, _attack_plan(names, resolved)
    )
    return {name: METRICS[name].compute(inputs, resolved[name]).detach() for name in names}


def compute_metric(
    name: str,
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
    """Per-example scores (B,) of metric ``name`` ((B, L) for "randomisation").

    See :func:`compute_metrics` for the arguments; ``options`` are the metric's own (listed in
    the module docstring and in ``metric_spec(name).defaults``).
    """
    return compute_metrics(
        [name], model, x, y, method, masks, spurious_masks,
        options={name: options}, example_ids=example_ids, attribution=attribution,
    )[name]
