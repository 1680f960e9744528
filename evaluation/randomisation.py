"""The model-parameter randomisation check: the one algorithm behind ``SanityCheck``'s
``sanity/...`` values and the ``randomisation`` column of ``train.py report``.

Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim, "Sanity Checks for Saliency Maps", NeurIPS
2018: on a copy of the model, the layers with parameters are re-initialised from the top down,
cumulatively, and after each stage the explanation of the same class is compared with the
trained model's (:func:`metrics.functional.cascading_randomisation`: Spearman's ρ of the |Φ|
maps, SSIM of the maps scaled to [0, 1] and, when asked, the Pearson correlation of their HOG
features, all from one pass). Per-example rows (B, L)
accumulate in torchmetrics states that concatenate across processes; the result is the mean
over examples at each stage (undefined values left out and counted).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attributions import AttributionMethod
from evaluation.explanation_scores import ScoreSummary, Target, explained_classes, optional_number
from metrics import MeanScore, ModelRandomisation
from metrics.functional import cascading_randomisation, parameter_layers

SIMILARITIES: tuple[str, ...] = ("spearman", "ssim", "hog")


@dataclass
class RandomisationSummary:
    """Mean similarity per method, similarity and stage.

    Attributes:
        layers: the re-initialised layers, top (output) first; stage l re-initialises layers[: l + 1].
        similarity: ``{method: {similarity: (L,) mean over the examples}}``.
        cells: ``{method: {similarity: ScoreSummary}}`` (value: after the last stage, the whole
            network randomised; counts of defined and undefined last-stage values).
    """

    layers: list[str]
    similarity: dict[str, dict[str, Tensor]]
    cells: dict[str, dict[str, ScoreSummary]]


class RandomisationTable:
    """Per method × similarity accumulators of the per-example, per-stage rows (DDP-safe)."""

    def __init__(self, methods: Sequence[str], similarities: Sequence[str]) -> None:
        unknown = [s for s in similarities if s not in SIMILARITIES]
        if unknown or not similarities:
            raise ValueError(f"similarities must be a non-empty list among {SIMILARITIES}, got {list(similarities)}")
        self.methods = list(methods)
        self.similarities = list(similarities)
        self.layers: list[str] = []
        self.rows = {(m, s): ModelRandomisation() for m in self.methods for s in self.similarities}
        self.last = {(m, s): MeanScore() for m in self.methods for s in self.similarities}

    def to(self, device: torch.device | str) -> RandomisationTable:
        self.rows = {key: w.to(device) for key, w in self.rows.items()}
        self.last = {key: w.to(device) for key, w in self.last.items()}
        return self

    def update(self, method: str, similarity: str, rows: Tensor) -> None:
        """Add (B, L) per-example, per-stage similarities."""
        self.rows[(method, similarity)].update(rows)
        self.last[(method, similarity)].update(rows[:, -1])

    def compute(self) -> RandomisationSummary:
        """Everything seen, on every process (a collective call under DDP)."""
        similarity: dict[str, dict[str, Tensor]] = {m: {} for m in self.methods}
        cells: dict[str, dict[str, ScoreSummary]] = {m: {} for m in self.methods}
        for (method, name), wrapper in self.rows.items():
            means = wrapper.compute().cpu()  # (L,)
            last = self.last[(method, name)]
            last.compute()
            with last.sync_context():
                count, undefined = int(last.count), int(last.undefined)
            per_layer = [optional_number(v) for v in means.tolist()]
            similarity[method][name] = means
            cells[method][name] = ScoreSummary(per_layer[-1] if per_layer else None, count, undefined, per_layer)
        return RandomisationSummary(list(self.layers), similarity, cells)

    def reset(self) -> None:
        for wrapper in (*self.rows.values(), *self.last.values()):
            wrapper.reset()


def randomisation_check(
    model: nn.Module,
    methods: Mapping[str, AttributionMethod],
    x: Tensor,
    y: Tensor,
    *,
    similarities: Sequence[str] = SIMILARITIES,
    seed: int = 0,
    target: Target = "label",
    batch_size: int = 128,
    table: RandomisationTable | None = None,
    progress: Callable[[str], None] | None = None,
) -> RandomisationTable:
    """Cascading randomisation of every method on the examples (x, y), batch by batch.

    Args:
        model: the trained classifier (left untouched; copies are randomised).
        methods: attribution methods by name.
        x, y: the examples and their labels, on the model's device.
        similarities: any of "spearman", "ssim" and "hog" (the last needs scikit-image).
        seed: seed of the re-initialisation (layer l uses seed + l; the caller's RNG is left alone).
        target: explain the "label" or the "predicted" class (the same class at every stage).
        batch_size: examples per pass.
        table: where to accumulate (a fresh :class:`RandomisationTable` when None).
        progress: called with the method's name after each batch.
    """
    table = table if table is not None else RandomisationTable(list(methods), similarities)
    if x.shape[0] > 0:
        table.layers = list(reversed(parameter_layers(model, x[:1])))  # top first
    for lo in range(0, int(x.shape[0]), batch_size):
        xb = x[lo : lo + batch_size]
        targets = explained_classes(model, xb, y[lo : lo + batch_size], target)
        for name, method in methods.items():
            result = cascading_randomisation(
                model, xb, targets, method, seed=seed, hog="hog" in table.similarities
            )  # (b, L) each
            table.layers = result.layers
            for similarity in table.similarities:
                table.update(name, similarity, getattr(result, similarity))
            if progress is not None:
                progress(name)
    return table
