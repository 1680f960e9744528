"""SanityCheck: the model-parameter randomisation test at the end of fit.

Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim, "Sanity Checks for Saliency Maps", NeurIPS
2018: re-initialise the layers of (a copy of) the trained model one after the other from the
top, cumulatively, and compare each explanation with the trained model's one. A method that
explains what the model learnt loses similarity as more of it is randomised; one that stays
similar (like an edge detector, which stays at exactly 1) does not depend on the model. The
paper's similarities are reported: Spearman's ρ of the |Φ| maps and SSIM of the maps scaled to
[0, 1] by default, and the rank correlation of their HOG features on request (needs
scikit-image) (:func:`metrics.functional.cascading_randomisation`, one pass for all).

At the end of training (``on_train_end``, once, on the probe set) it logs:

- ``sanity/<method>/<similarity>@<layer>``: mean similarity once every layer from the top down
  to ``<layer>`` is re-initialised (one key per layer with parameters, e.g.
  ``sanity/saliency/spearman@net.fc``);
- ``sanity/<method>/<similarity>@all``: the same once the whole network is re-initialised (a
  duplicate of the deepest layer's key under a name that does not depend on the architecture,
  to compare runs);
- ``sanity/seconds``.

With W&B these are history values (so also the run's summary) and the table
``sanity/randomisation`` (method, similarity, stage, layer, mean similarity); with other
loggers the table is ``sanity_check.csv`` in the logger's log directory.

The check is :func:`evaluation.randomisation_check`, the algorithm of ``train.py report``'s
``randomisation`` column; per-example rows accumulate in torchmetrics states that concatenate
across processes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pytorch_lightning import LightningModule, Trainer
from torch import Tensor, nn

from callbacks.explanation_monitor import Target, check_methods
from callbacks.observe import observing
from callbacks.probe import ProbeCallback, check_int, classifier, model_device
from callbacks.run_output import file_directories, log_to_run, wandb_loggers, write_csv
from evaluation import RandomisationTable, randomisation_check
from metrics import check_metric

Similarity = Literal["spearman", "ssim", "hog"]
SIMILARITIES: tuple[str, ...] = ("spearman", "ssim", "hog")
TABLE_COLUMNS: tuple[str, ...] = ("method", "similarity", "stage", "layer", "mean_similarity")


@dataclass
class SanityResult:
    """Mean similarity per method, similarity and randomisation stage.

    Attributes:
        layers: the re-initialised layers, top (output) first; stage l re-initialises layers[: l + 1].
        similarity: ``{method: {similarity: (L,) means over the probe set}}``.
    """

    layers: list[str]
    similarity: dict[str, dict[str, Tensor]]

    def scalars(self) -> dict[str, float]:
        values = {}
        for method, by_similarity in self.similarity.items():
            for name, means in by_similarity.items():
                for layer, mean in zip(self.layers, means.tolist()):
                    values[f"sanity/{method}/{name}@{layer}"] = mean
                values[f"sanity/{method}/{name}@all"] = float(means[-1])
        return values

    def rows(self) -> list[list[Any]]:
        return [
            [method, name, stage, layer, float(means[stage])]
            for method, by_similarity in self.similarity.items()
            for name, means in by_similarity.items()
            for stage, layer in enumerate(self.layers)
        ]


class SanityCheck(ProbeCallback):
    """Cascading model-parameter randomisation of the trained model, at the end of fit.

    Args:
        methods: attribution methods by name or import path (add "edge" for the control that
            stays at 1); None: the registry's "callbacks" list (saliency and integrated gradients).
        method_options: ``{method: {option: value}}`` (integrated gradients: 8 steps by default).
        similarities: "spearman", "ssim" and/or "hog" (scikit-image needed).
        target: explain the "label" or the "predicted" class (the same class at every stage).
        probe_size: examples in the probe set, drawn from the validation split.
        probe_seed: seed of the probe draw.
        seed: seed of the re-initialisation (the training RNG streams are left alone).
        batch_size: examples per pass.
    """

    def __init__(
        self,
        methods: Sequence[str] | None = None,
        method_options: dict[str, dict[str, Any]] | None = None,
        similarities: Sequence[Similarity] = ("spearman", "ssim"),
        target: Target = "label",
        probe_size: int = 64,
        probe_seed: int = 0,
        seed: int = 0,
        batch_size: int = 128,
    ) -> None:
        super().__init__(probe_size, probe_seed, batch_size)
        self.methods = check_methods(methods, method_options)
        if isinstance(similarities, str) or not similarities or len(set(similarities)) != len(similarities):
            raise ValueError(f"similarities must be a non-empty list of distinct names from {SIMILARITIES}, got {similarities!r}")
        for name in similarities:
            if name not in SIMILARITIES:
                raise ValueError(f"similarities must be among {SIMILARITIES}, got {name!r}")
        check_int("seed", seed, 0)
        for name in similarities:
            check_metric("randomisation", similarity=name, seed=seed)
        if target not in ("label", "predicted"):
            raise ValueError(f"target must be one of ('label', 'predicted'), got {target!r}")
        self.similarities = list(similarities)
        self.target = target
        self.seed = seed
        self.last: SanityResult | None = None


    def state_key_fields(self) -> dict[str, Any]:
        return {**super().state_key_fields(), "methods": list(self.methods), "seed": self.seed}

    def evaluate(self, model: nn.Module) -> SanityResult:
        """The check on the whole probe set, from this rank's share (see :meth:`use_probe`), with
        :func:`evaluation.randomisation_check` (the algorithm of ``train.py report``'s
        ``randomisation`` column); a collective call under DDP. ``model`` is left as found (the
        re-initialised layers belong to a copy)."""
        share = self.share(model_device(model))
        with observing(model):
            # Fresh states for each evaluation (tensors made in __init__ would be shared between
            # the processes ddp_spawn starts from one pickled callback).
            table = RandomisationTable(list(self.methods), self.similarities).to(share.x.device)
            randomisation_check(
                model, self.methods, share.x, share.y, similarities=self.similarities, seed=self.seed,
                target=self.target, batch_size=self.batch_size, table=table,
            )  # fmt: skip
            summary = table.compute()
        return SanityResult(summary.layers, summary.similarity)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.skip(trainer):
            return
        started = time.perf_counter()
        self.last = self.evaluate(classifier(pl_module, trainer))
        if not trainer.is_global_zero:
            self.seconds += time.perf_counter() - started
            return
        rows = self.last.rows()
        wandb_extras: dict[str, Any] = {}
        if wandb_loggers(trainer):
            import wandb

            wandb_extras["sanity/randomisation"] = wandb.Table(columns=list(TABLE_COLUMNS), data=rows)
        for directory in file_directories(trainer):
            write_csv(directory / "sanity_check.csv", TABLE_COLUMNS, rows)
        log_to_run(trainer, {**self.last.scalars(), "sanity/seconds": time.perf_counter() - started}, wandb_extras)
        self.seconds += time.perf_counter() - started
