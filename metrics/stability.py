"""Robustness of the explanation relative to what moved: relative input, output and
representation stability (Agarwal et al. 2022) and continuity (Montavon et al. 2018). Numerics
and the conventions chosen (and where Quantus 0.6 departs) in :mod:`metrics.functional.stability`.

Consistency (Dasgupta et al. 2022) pools examples (pairs with the same explanation), so a
per-example score depends on the batch; it is a function here
(:func:`metrics.functional.stability.consistency`, :func:`~metrics.functional.stability.consistency_from_codes`)
until a metric gathers the codes and predictions of the whole set before scoring.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from metrics.base import MeanScore, MetricInputs, check_boolean, check_choice, check_integer, check_positive
from metrics.functional import stability as functional


class _RelativeStability(MeanScore):
    """Shared by the three: one set of perturbations and their attributions per batch serves all
    three (memoised by their common options). Lower is more stable; NaN where every x' changed
    the prediction."""

    higher_is_better = False
    kind: ClassVar[str] = "input"

    def __init__(
        self,
        radius: float = 0.05,
        n_samples: int = 20,
        layer: str | None = None,
        eps_min: float = 1e-6,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.radius = check_positive("radius", radius)
        self.n_samples = check_integer("n_samples", n_samples, 1)
        if layer is not None and not isinstance(layer, str):
            raise ValueError(f"layer must be a module name (str) or None, got {layer!r}")
        self.layer = layer
        self.eps_min = check_positive("eps_min", eps_min)
        self.seed = check_integer("seed", seed, 0)

    def score(self, inputs: MetricInputs) -> Tensor:
        options = {"radius": self.radius, "n_samples": self.n_samples, "layer": self.layer, "eps_min": self.eps_min, "seed": self.seed}
        scores = inputs.memo(
            ("relative_stability", tuple(sorted(options.items(), key=lambda item: item[0]))),
            lambda: functional.relative_stability(
                inputs.model, inputs.x, inputs.target, inputs.method, kinds=functional.STABILITY_KINDS,
                attribution=inputs.attribution, ids=inputs.ids, **options,  # type: ignore[arg-type]
            ),
        )
        return scores[self.kind].float()


class RelativeInputStability(_RelativeStability, name="relative_input_stability"):
    """RIS = max_{x'} ‖(Φ(x) − Φ(x'))/Φ(x)‖ / max(‖(x − x')/x‖, ε_min) over label-preserving
    x' = x + δ, δ uniform in the L∞ ball of radius r.

    Args:
        radius: r.
        n_samples: perturbations.
        layer: the representation's layer (used by relative_representation_stability only, kept
            so the three share one set of samples); None: the input of the last nn.Linear.
        eps_min: ε_min.
        seed: seed of the draws (per example).
    """

    kind = "input"


class RelativeOutputStability(_RelativeStability, name="relative_output_stability"):
    """ROS = max_{x'} ‖(Φ(x) − Φ(x'))/Φ(x)‖ / max(‖h(x) − h(x')‖, ε_min), h the logits. Options
    as :class:`RelativeInputStability`."""

    kind = "output"


class RelativeRepresentationStability(_RelativeStability, name="relative_representation_stability"):
    """RRS = max_{x'} ‖(Φ(x) − Φ(x'))/Φ(x)‖ / max(‖(L(x) − L(x'))/L(x)‖, ε_min), L the output of
    ``layer`` (None: the penultimate representation, the input of the last nn.Linear). Options as
    :class:`RelativeInputStability`."""

    kind = "representation"


class Continuity(MeanScore, name="continuity"):
    """max over horizontal translations x' of ‖|Φ̂(x)| − |Φ̂(x')|‖₁ / ‖x − x'‖₂. Lower is better.

    Args:
        n_steps: translations (None: the image width, Quantus's schedule).
        normalise: divide each map by its own largest |Φ|.
        fill: vacated columns, "zero" or "min" (the image's minimum, Quantus's "black").
    """

    higher_is_better = False

    def __init__(self, n_steps: int | None = None, normalise: bool = True, fill: str = "zero", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_steps = check_integer("n_steps", n_steps, 1, optional=True)
        self.normalise = check_boolean("normalise", normalise)
        self.fill = check_choice("fill", fill, functional.FILLS)

    def score(self, inputs: MetricInputs) -> Tensor:
        return functional.continuity(
            inputs.model, inputs.x, inputs.target, inputs.method, attribution=inputs.attribution,
            n_steps=self.n_steps, normalise=self.normalise, fill=self.fill,
        ).float()

