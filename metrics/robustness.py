"""Robustness of the explanation: how much Φ moves when the input moves a little.

:class:`ExplanationRobustness` compares the per-pixel map of Φ(x) with that of Φ(x'), both
Σ_c |Φ_c| (the protocol of Ghorbani, Abid & Zou, "Interpretation of Neural Networks is
Fragile", AAAI 2019, and Chen, Wu, Rastogi, Liang & Jha, "Robust Attribution Regularization",
NeurIPS 2019), with a :class:`Similarity` object, where x' comes from a :class:`Perturbation`
object::

    ExplanationRobustness(SpearmanCorrelation(), ClassifierPGD(eps=0.1, steps=10))
    ExplanationRobustness("kendall", AttackPerturbation(AutoAttack(eps=0.1, version="fast")))

Similarities (higher is more robust for all): ``topk_intersection`` (share of the k most
relevant pixels kept), ``spearman`` (ρ), ``kendall`` (τ_b), ``cosine``; see
:mod:`common.similarity`. Perturbations: ``noise`` (:class:`UniformNoise`), ``pgd``
(:class:`ClassifierPGD`), ``topk_attack`` (:class:`TopKAttack`), and :class:`AttackPerturbation`
around any :class:`attacks.EvaluationAttack` (AutoAttack, a margin-loss PGD, ...).

Names ``<similarity>@<perturbation>`` are shorthand for the registered similarities × the
registered perturbations whose options all have defaults (``spearman@noise``: eps, k, seed),
generated here as the classes register; the perturbation is in the name so that a logged key
says what was measured. Metrics of one batch that differ only in their similarity share one x'
and one Φ(x') (one top-k attack run, tracking every criterion they select by).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

from torch import Tensor

from attacks import EvaluationAttack
from attacks.explanation import ExplanationAttackResult
from attributions import pixel_map
from common.registry import NameRegistry, init_parameters
from metrics.base import (
    ExplanationMetric,
    MeanScore,
    MetricInputs,
    check_boolean,
    check_choice,
    check_integer,
    check_number,
    check_positive,
)
from metrics.functional.robustness import SIMILARITIES, map_similarity, perturb, topk_attack

# ---------------------------------------------------------------------------------------------
# Shorthand names: <similarity>@<perturbation>

_SHORTHANDS: dict[type, type | None] = {}


def _shorthand_class(perturbation_cls: type[Perturbation]) -> type[ExplanationRobustness] | None:
    """The class behind ``<similarity>@<name of perturbation_cls>``: the similarity by name and
    the perturbation's options flat (plus ``k`` when the perturbation has none), or None when
    the perturbation has an option without a default."""
    if perturbation_cls in _SHORTHANDS:
        return _SHORTHANDS[perturbation_cls]
    own = init_parameters(perturbation_cls)
    if any(p.default is p.empty for p in own):
        _SHORTHANDS[perturbation_cls] = None
        return None
    names = [p.name for p in own]
    flat = [p.replace(kind=p.KEYWORD_ONLY) for p in own]
    if "k" not in names:  # k of the top-k similarity, next to eps as it always was
        at = names.index("eps") + 1 if "eps" in names else 0
        flat.insert(at, inspect.Parameter("k", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="int | None"))
    option_names = tuple(p.name for p in flat)

    def __init__(self: ExplanationRobustness, similarity: str, **options: Any) -> None:
        metric_kwargs = {key: value for key, value in options.items() if key not in option_names}
        perturbation = perturbation_cls(**{key: options[key] for key in names if key in options})
        k = options.get("k") if "k" not in names else None
        ExplanationRobustness.__init__(self, similarity, perturbation, k=k, **metric_kwargs)

    def options(self: ExplanationRobustness) -> dict[str, Any]:
        values = {**self.perturbation.options(), **({} if "k" in names else {"k": self.k})}
        return {key: values[key] for key in option_names}

    def option_names_(cls: type) -> tuple[str, ...]:
        return option_names

    name = f"{perturbation_cls.__name__}Robustness"
    cls = type(
        name,
        (ExplanationRobustness,),
        {
            "__init__": __init__,
            "options": options,
            "option_names": classmethod(option_names_),
            "__module__": __name__,
            "__qualname__": name,
            "__doc__": f"``<similarity>@{perturbation_cls.registered_name}``: :class:`ExplanationRobustness` with a "
            f":class:`{perturbation_cls.__name__}` built from flat options {option_names}.",
            "__signature__": inspect.Signature(
                [inspect.Parameter("similarity", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation="str"), *flat]
            ),
        },
    )
    setattr(sys.modules[__name__], name, cls)  # importable by name (pickled metrics, spawned processes)
    _SHORTHANDS[perturbation_cls] = cls
    return cls


def _register_shorthands() -> None:
    """Register ``<similarity>@<perturbation>`` for every pair not registered yet."""
    if "Perturbation" not in globals() or "ExplanationRobustness" not in globals():
        return  # the module is still being defined: registered at its end
    for perturbation in Perturbation.registry.names():
        shorthand = _shorthand_class(Perturbation.registry.entry(perturbation).cls)
        if shorthand is None:
            continue
        for similarity in Similarity.registry.names():
            name = f"{similarity}@{perturbation}"
            if name not in ExplanationMetric.registry:
                ExplanationMetric.registry.register(name, shorthand, similarity=similarity)


# ---------------------------------------------------------------------------------------------
# Similarities


class Similarity:
    """A similarity of per-pixel maps (B, H, W) × (B, H, W) -> (B,), higher = more alike.

    A subclass registers itself by name (``class Ssim(Similarity, name="ssim")``) and overrides
    :meth:`__call__`; every registered perturbation then offers ``<name>@<perturbation>``.
    """

    registry: ClassVar[NameRegistry[Similarity]] = NameRegistry("similarity")
    name: ClassVar[str] = ""

    def __init_subclass__(cls, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if name is not None:
            cls.name = name
            Similarity.registry.register(name, cls)
            _register_shorthands()

    def __call__(self, maps: Tensor, perturbed_maps: Tensor, k: int | None = None) -> Tensor:
        """(B,) similarities; ``k`` is the top set of a top-k similarity (None: 100 per 28 × 28)."""
        return map_similarity(maps, perturbed_maps, self.name, k)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class TopKIntersection(Similarity, name="topk_intersection"):
    """Share of the k most relevant pixels of Φ(x) that are among the k most relevant of Φ(x')
    (Ghorbani et al. 2019); see :func:`common.similarity.topk_intersection`."""


class SpearmanCorrelation(Similarity, name="spearman"):
    """Spearman's ρ of the two maps' pixel ranks; see :func:`common.similarity.spearman`."""


class KendallTau(Similarity, name="kendall"):
    """Kendall's τ_b of the two maps (Chen et al. 2019's headline); see :func:`common.similarity.kendall`."""


class CosineSimilarity(Similarity, name="cosine"):
    """Cosine of the two maps as vectors; see :func:`common.similarity.cosine`."""


# ---------------------------------------------------------------------------------------------
# Perturbations


class Perturbation:
    """Where x' comes from: ``perturbation(inputs) -> x'`` (B, C, H, W), in [0, 1].

    A subclass registers itself by name and takes its options in ``__init__`` (stored under
    the same names); :meth:`key` says when two perturbations give the same x', so metrics that
    differ only in their similarity share it.
    """

    registry: ClassVar[NameRegistry[Perturbation]] = NameRegistry("perturbation")
    registered_name: ClassVar[str] = ""

    def __init_subclass__(cls, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if name is not None:
            cls.registered_name = name
            Perturbation.registry.register(name, cls)
            _register_shorthands()

    @property
    def name(self) -> str:
        """The perturbation's part of a metric's name (``noise`` in ``spearman@noise``)."""
        return self.registered_name or type(self).__name__

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The options of ``__init__``."""
        return tuple(p.name for p in init_parameters(cls))

    def options(self) -> dict[str, Any]:
        """Every option with the value in use (shorthands resolved)."""
        return {name: getattr(self, name) for name in self.option_names()}

    def key(self) -> Hashable:
        """Equal for two perturbations that produce the same x' on the same batch."""
        return (type(self).__module__, type(self).__qualname__, tuple(sorted(self.options().items())))

    def __call__(self, inputs: MetricInputs) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({options})"


class UniformNoise(Perturbation, name="noise"):
    """x' = clip(x + δ, 0, 1), δ uniform in the L∞ ball of radius ε, drawn per example from
    (``seed``, the example's id), so x' does not depend on the batching or the process.

    Args:
        eps: L∞ radius, in [0, 1] pixel units.
        seed: seed of the draws.
    """

    def __init__(self, eps: float = 0.1, seed: int = 0) -> None:
        self.eps = check_number("eps", eps, 0.0, 1.0)
        self.seed = check_integer("seed", seed, 0)

    def __call__(self, inputs: MetricInputs) -> Tensor:
        return perturb(inputs.model, inputs.x, inputs.target, inputs.method, "noise", eps=self.eps, seed=self.seed, ids=inputs.ids)


class ClassifierPGD(Perturbation, name="pgd"):
    """x' = PGD on the classifier's cross-entropy at the explained class (Madry, Makelov,
    Schmidt, Tsipras & Vladu, ICLR 2018), L∞, from x (no random start: deterministic).

    Args:
        eps: L∞ radius.
        steps: ascent steps.
        step_size: step length (None: 2.5 ε / steps, Madry et al.'s rule).
    """

    def __init__(self, eps: float = 0.1, steps: int = 10, step_size: float | None = None) -> None:
        self.eps = check_number("eps", eps, 0.0, 1.0)
        self.steps = check_integer("steps", steps, 1)
        self.step_size = check_positive("step_size", step_size, optional=True)

    def __call__(self, inputs: MetricInputs) -> Tensor:
        return perturb(
            inputs.model, inputs.x, inputs.target, inputs.method, "pgd", eps=self.eps, steps=self.steps, step_size=self.step_size
        )


class TopKAttack(Perturbation, name="topk_attack"):
    """Ghorbani et al.'s top-k attack on the explanation itself (:class:`attacks.TopKExplanationAttack`):
    signed steps that push attribution mass out of the clean top-k pixels. The iterate kept is
    the label-preserving one with the lowest value of the metric's own similarity (or of
    ``criterion``); with labels, examples the model misclassifies are not attacked and score
    NaN, as in Ghorbani et al.'s and Chen et al.'s code. :func:`attacks.chen_protocol` gives
    Chen et al.'s settings per dataset.

    Args:
        eps: L∞ radius.
        k: shorthand for ``k_attack`` and ``k_score`` together.
        k_attack: the top set the attack pushes mass out of (None: 100 per 28 × 28 pixels).
        k_score: the k scored by a top-k intersection (None: 100 per 28 × 28 pixels).
        steps: attack steps (100, as both papers).
        step_size: step length (0.01).
        softplus_beta: β of the softplus the attack differentiates through (ReLU networks).
        criterion: the similarity that selects the kept iterate (None: the metric's own;
            "kendall" reproduces Chen et al.'s tables).
        stop_at_label_flip: the older rule that stops an example at its first label flip.
    """

    def __init__(
        self,
        eps: float = 0.1,
        k: int | None = None,
        k_attack: int | None = None,
        k_score: int | None = None,
        steps: int = 100,
        step_size: float = 0.01,
        softplus_beta: float = 10.0,
        criterion: str | None = None,
        stop_at_label_flip: bool = False,
    ) -> None:
        self.eps = check_number("eps", eps, 0.0, 1.0)
        self.k = check_integer("k", k, 1, optional=True)
        self.k_attack = check_integer("k_attack", k_attack, 1, optional=True)
        self.k_score = check_integer("k_score", k_score, 1, optional=True)
        self.steps = check_integer("steps", steps, 1)
        self.step_size = check_positive("step_size", step_size, optional=True)
        self.softplus_beta = check_positive("softplus_beta", softplus_beta)
        self.criterion = check_choice("criterion", criterion, (None, *SIMILARITIES))
        self.stop_at_label_flip = check_boolean("stop_at_label_flip", stop_at_label_flip)
        if k is not None:
            if k_attack is not None or k_score is not None:
                raise ValueError("k sets both k_attack and k_score; give either k, or k_attack and/or k_score")
            self.k_attack = self.k_score = k

    def attack_key(self) -> Hashable:
        """What fixes the attack's trajectory and scores: every option but the criterion (and
        ``k``, resolved into ``k_attack`` and ``k_score``)."""
        return ("topk_attack", tuple(sorted((k, v) for k, v in self.options().items() if k not in ("criterion", "k"))))

    key = attack_key

    def run(self, inputs: MetricInputs, criterion: str) -> ExplanationAttackResult:
        """The attack on this batch, once, tracking every criterion the batch's metrics use."""
        key = self.attack_key()
        criteria = inputs.attack_criteria.get(key, (criterion,))
        options = {k: v for k, v in self.options().items() if k not in ("criterion", "k")}
        return inputs.memo(key, lambda: topk_attack(inputs.model, inputs.x, inputs.target, inputs.method, criteria, **options))

    def __call__(self, inputs: MetricInputs) -> Tensor:
        criterion = self.criterion or "topk_intersection"
        return self.run(inputs, criterion).selections[criterion].x_adv


class AttackPerturbation(Perturbation):
    """x' = any evaluation attack on the classifier at the explained class (AutoAttack, PGD on
    the margin or DLR loss, ...): ``attack(model, x, target)``.

    Not a shorthand (the attack has no default); use it as an object, or give a name to a
    subclass with defaults (``class AutoAttackNoise(ExplanationRobustness, name="spearman@aa")``).

    Args:
        attack: an :class:`attacks.EvaluationAttack`, or its ``{"class_path": ..., "init_args": {...}}``.
    """

    def __init__(self, attack: EvaluationAttack | Mapping[str, Any]) -> None:
        if isinstance(attack, Mapping):
            attack = _instantiate(attack)
        if not isinstance(attack, EvaluationAttack):
            raise ValueError(f"attack must be an attacks.EvaluationAttack or its {{class_path, init_args}}, got {attack!r}")
        self.attack = attack

    @property
    def name(self) -> str:
        return str(self.attack.name)

    def key(self) -> Hashable:
        return ("attack", id(self.attack))

    def __call__(self, inputs: MetricInputs) -> Tensor:
        return self.attack(inputs.model, inputs.x, inputs.target)


def _instantiate(node: Mapping[str, Any]) -> Any:
    path = node.get("class_path")
    if not isinstance(path, str) or "." not in path:
        raise ValueError(f"attack must name its class as class_path 'module.Class', got {dict(node)!r}")
    module_name, _, attribute = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"attack class_path {path!r} must be importable: {error}") from error
    return cls(**dict(node.get("init_args") or {}))


# ---------------------------------------------------------------------------------------------
# The metric


class ExplanationRobustness(MeanScore):
    """Similarity of Φ(x) and Φ(x') (their per-pixel maps Σ_c |Φ_c|), x' from a perturbation.

        R(x) = sim(M(Φ(x)), M(Φ(x'))),    M(Φ)_{hw} = Σ_c |Φ_{c,h,w}|

    Ghorbani, Abid & Zou, AAAI 2019 (top-k intersection, Spearman's ρ under noise and under
    attacks on the explanation); Chen et al., NeurIPS 2019 (Kendall's τ under the top-k attack).
    Higher is more robust.

    Args:
        similarity: a :class:`Similarity`, or its registered name.
        perturbation: a :class:`Perturbation`, or its registered name (with its defaults).
        k: k of a top-k similarity (None: 100 per 28 × 28 pixels); under the top-k attack its
            ``k_score`` is used.
        **kwargs: torchmetrics options (``sync_on_compute``, ...).
    """

    higher_is_better = True

    def __init__(
        self,
        similarity: Similarity | str,
        perturbation: Perturbation | str,
        k: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.similarity = Similarity.registry.build(similarity) if isinstance(similarity, str) else similarity
        self.perturbation = Perturbation.registry.build(perturbation) if isinstance(perturbation, str) else perturbation
        if not isinstance(self.similarity, Similarity):
            raise ValueError(f"similarity must be one of {Similarity.registry.names()} or a Similarity, got {similarity!r}")
        if not isinstance(self.perturbation, Perturbation):
            raise ValueError(f"perturbation must be one of {Perturbation.registry.names()} or a Perturbation, got {perturbation!r}")
        self.k = check_integer("k", k, 1, optional=True)
        if isinstance(self.perturbation, TopKAttack) and k is not None:
            raise ValueError("k must be set on the TopKAttack (its k or k_score) when it is the perturbation, got k on the metric")
        if isinstance(self.perturbation, TopKAttack) and self.criterion not in SIMILARITIES:
            raise ValueError(
                f"criterion must be one of {SIMILARITIES} for a top-k attack scored by {self.similarity.name!r} "
                "(the attack selects its iterate by it)"
            )

    @property
    def name(self) -> str:
        return f"{self.similarity.name}@{self.perturbation.name}"

    @property
    def criterion(self) -> str:
        """The similarity that selects a top-k attack's iterate."""
        return getattr(self.perturbation, "criterion", None) or self.similarity.name

    def perturbed(self, inputs: MetricInputs) -> Tensor:
        """The x' this metric scores on ``inputs`` (B, C, H, W) (under the top-k attack: the
        iterate its criterion selects; skipped examples unchanged)."""
        if isinstance(self.perturbation, TopKAttack):
            return self.perturbation.run(inputs, self.criterion).selections[self.criterion].x_adv
        return self.perturbation(inputs)

    def score(self, inputs: MetricInputs) -> Tensor:
        if isinstance(self.perturbation, TopKAttack):
            return self._score_topk(inputs, self.perturbation)
        key = ("perturbed_maps", self.perturbation.key())

        def perturbed_maps() -> Tensor:
            x_adv = self.perturbation(inputs)
            return pixel_map(inputs.method(inputs.model, x_adv, inputs.target))

        return self.similarity(inputs.maps, inputs.memo(key, perturbed_maps), self.k)

    def _score_topk(self, inputs: MetricInputs, attack: TopKAttack) -> Tensor:
        result = attack.run(inputs, self.criterion)
        selection = result.selections[self.criterion]
        if self.criterion == self.similarity.name:  # the criterion's value at its own iterate is the score
            return selection.score
        maps = inputs.memo(
            ("topk_attack_maps", attack.attack_key(), self.criterion),
            lambda: pixel_map(inputs.method(inputs.model, selection.x_adv, inputs.target)),
        )
        scores = self.similarity(inputs.maps, maps, attack.k_score)
        return scores.masked_fill(~result.attacked, float("nan"))


_register_shorthands()
