"""TCAVMonitor: a concept's TCAV score for chosen classes, every N epochs or steps.

At the start of fit it draws, once and seeded, from the datamodule's own generator
(:meth:`datamodules.SyntheticShapes.concept_examples`, ``random_examples``, ``class_examples``):
each concept's example set, ``random_sets`` counter-example sets without the concept, and
``probe_size`` inputs of each explained class. Each run fits the CAVs on the current weights
and computes the TCAV scores and their t-test (:func:`concepts.tcav`, Kim et al., ICML 2018): on
``SyntheticShapes(spurious_rate > 0)``, the "patch" concept's score for the spurious class rises
as the model learns the shortcut (the spurious-signal test of Adebayo et al., ICLR 2022).

Logged at the trainer's global step, for each concept C and class k (by name):

- ``tcav/<C>/<k>``: mean TCAV score over the random sets;
- ``tcav/<C>/<k>/p_value``: two-sided t-test against random-versus-random CAVs (above 0.05:
  C is indistinguishable from a random direction for k, whatever its score);
- ``tcav/<C>/cav_accuracy``: mean held-out accuracy of C's CAVs (near 0.5: the layer does not
  separate the concept linearly, and its scores mean little);
- ``tcav/seconds``: wall time of the run.

Every process computes the same numbers (the sets are small); rank zero logs them. The model's
modes, the weights' ``.grad`` and the random streams are left as found (:func:`observing`).

YAML::

    trainer:
      callbacks:
        - class_path: callbacks.TCAVMonitor
          init_args:
            concepts: [patch, disk]
            classes: [disk]
            every_n_epochs: 1
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from pytorch_lightning import LightningModule, Trainer
from torch import Tensor, nn

from attributions.grad_cam import default_gradcam_layer
from callbacks.observe import observing
from callbacks.probe import PeriodicProbeCallback, check_int, classifier, model_device
from callbacks.run_output import log_to_run
from concepts import ConceptCAVs, fit_concept_cavs, layer_activations, layer_gradients, tcav_test
from concepts.layers import check_layer
from datamodules import ProbeBatch

_CONCEPT_API = ("concept_names", "concept_examples", "random_examples", "class_examples")


class TCAVMonitor(PeriodicProbeCallback):
    """TCAV scores of concepts for classes while training.

    Args:
        concepts: concept names the datamodule can draw (``datamodule.concept_names()``; on
            SyntheticShapes "patch" and the shape names).
        classes: the explained classes, by name or index; None: every class.
        layer: module name (``model.named_modules()``) whose activations hold the CAVs; None:
            the model's Grad-CAM layer (its last convolutional stage).
        concept_size: examples in each concept set and in each random set.
        random_sets: random counter-example sets R (>= 2): R scores per concept and class, and
            R − 1 random-versus-random scores for the t-test.
        probe_size: inputs of each explained class whose directional derivatives are counted.
        probe_seed: seed of every set drawn (independent of the data and training seeds).
        batch_size: inputs per forward/backward pass.
        alpha: L2 regularisation of the CAVs' logistic regression.
        every_n_epochs: run after every this many training epochs.
        every_n_steps: run after every this many optimiser steps (set at most one of the two;
            with neither, every epoch).
    """

    def __init__(
        self,
        concepts: Sequence[str],
        classes: Sequence[str | int] | None = None,
        layer: str | None = None,
        concept_size: int = 30,
        random_sets: int = 8,
        probe_size: int = 30,
        probe_seed: int = 0,
        batch_size: int = 256,
        alpha: float = 0.01,
        every_n_epochs: int | None = None,
        every_n_steps: int | None = None,
    ) -> None:
        super().__init__(probe_size, probe_seed, batch_size, every_n_epochs, every_n_steps)
        if isinstance(concepts, str) or not concepts or len(set(concepts)) != len(concepts):
            raise ValueError(f"concepts must be a non-empty list of distinct concept names, got {concepts!r}")
        if classes is not None and (isinstance(classes, str) or not classes or len(set(classes)) != len(classes)):
            raise ValueError(f"classes must be a non-empty list of distinct class names or indices, or None, got {classes!r}")
        if layer is not None and not isinstance(layer, str):
            raise ValueError(f"layer must be a module name or None, got {layer!r}")
        check_int("concept_size", concept_size, 2)
        check_int("random_sets", random_sets, 2)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
            raise ValueError(f"alpha must be a number > 0, got {alpha!r}")
        self.concepts = list(concepts)
        self.classes = None if classes is None else list(classes)
        self.layer = layer
        self.concept_size = concept_size
        self.random_sets = random_sets
        self.alpha = float(alpha)
        self.targets: list[int] = []
        self.sets: dict[str, tuple[Tensor, list[Tensor]]] = {}
        self.last: dict[str, float] = {}

    # -- setup --------------------------------------------------------------------------------

    def draw_probe(self, datamodule: Any, world_size: int = 1) -> ProbeBatch:
        """Draw the class inputs (returned as the probe set) and the concept and random sets.

        Raises:
            ValueError: a datamodule without concept sets, or a concept or class it lacks.
        """
        name = type(datamodule).__name__
        missing = [m for m in _CONCEPT_API if not callable(getattr(datamodule, m, None))]
        if missing:
            raise ValueError(
                f"concepts must be drawn from a datamodule with concept example sets ({', '.join(_CONCEPT_API)}; "
                f"e.g. datamodules.SyntheticShapes), got {name} without {missing}"
            )
        known = list(datamodule.concept_names())
        for concept in self.concepts:
            if concept not in known:
                raise ValueError(f"concepts must be among {known} for {name}, got {concept!r}")
        class_names = [str(c) for c in getattr(datamodule, "class_names", [])]
        num_classes = int(datamodule.num_classes)
        self.targets = list(range(num_classes)) if self.classes is None else [self._class_index(c, class_names, num_classes) for c in self.classes]
        if len(set(self.targets)) != len(self.targets):
            raise ValueError(f"classes must name distinct classes of {name} {class_names}, got {self.classes!r}")
        with torch.random.fork_rng(devices=[]):
            self.sets = {
                c: (
                    datamodule.concept_examples(c, self.concept_size, seed=self.probe_seed),
                    [datamodule.random_examples(c, self.concept_size, seed=self.probe_seed * 1000 + i) for i in range(self.random_sets)],
                )
                for c in self.concepts
            }
            inputs = [datamodule.class_examples(k, self.probe_size, seed=self.probe_seed) for k in self.targets]
        x = torch.cat(inputs)
        y = torch.cat([torch.full((len(rows),), k, dtype=torch.long) for k, rows in zip(self.targets, inputs)])
        return ProbeBatch(x, y, torch.arange(len(y)))

    @staticmethod
    def _class_index(value: str | int, names: list[str], num_classes: int) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < num_classes:
            return value
        if isinstance(value, str) and value in names:
            return names.index(value)
        if isinstance(value, str) and value.isdigit() and int(value) < num_classes:  # an index the parser kept as text
            return int(value)
        raise ValueError(f"classes must hold class names {names} or indices in [0, {num_classes - 1}], got {value!r}")

    def state_key_fields(self) -> dict[str, Any]:
        return {**super().state_key_fields(), "concepts": self.concepts, "classes": self.classes, "layer": self.layer}

    # -- evaluation ---------------------------------------------------------------------------

    def layer_name(self, model: nn.Module) -> str:
        name = default_gradcam_layer(model) if self.layer is None else self.layer
        check_layer(model, name)
        return name

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """``{"tcav/<concept>/<class>": score, ".../p_value": p, "tcav/<concept>/cav_accuracy": a}``
        on the current weights; the model is left as found (modes, ``.grad``, random streams)."""
        assert self.probe is not None
        values: dict[str, float] = {}
        with observing(model):
            device = model_device(model)
            layer = self.layer_name(model)
            probe = self.probe.to(device)
            gradients = {k: layer_gradients(model, layer, probe.x[probe.y == k], k, self.batch_size) for k in self.targets}
            for concept, (examples, randoms) in self.sets.items():
                cavs: ConceptCAVs = fit_concept_cavs(
                    layer_activations(model, layer, examples.to(device), self.batch_size),
                    [layer_activations(model, layer, r.to(device), self.batch_size) for r in randoms],
                    self.alpha,
                    self.probe_seed,
                )
                values[f"tcav/{concept}/cav_accuracy"] = float(torch.tensor([c.accuracy for c in cavs.concept]).nanmean())
                for k in self.targets:
                    result = tcav_test(gradients[k], cavs)
                    values[f"tcav/{concept}/{self.class_name(k)}"] = result.score
                    values[f"tcav/{concept}/{self.class_name(k)}/p_value"] = result.p_value
        return values

    def run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        started = time.perf_counter()
        self.last = self.evaluate(classifier(pl_module, trainer))
        if trainer.is_global_zero:
            log_to_run(trainer, {**self.last, "tcav/seconds": time.perf_counter() - started})
