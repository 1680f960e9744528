"""RobustClassifier: one LightningModule for every recipe.

It composes a backbone (a built-in name or any ``nn.Module`` class by ``class_path``, with the
normalisation as its first layer), an objective from
``losses/`` and an optimiser/scheduler, all chosen in YAML. Train, validation and test share
one step; validation and test also measure accuracy under an evaluation attack that is
configured apart from the training attack.

Logged keys: ``train/loss``, ``train/acc`` (accuracy on the examples the objective trained on:
adversarial ones for PGD-AT), ``train/acc_adv`` (accuracy on the training attack's examples,
when the objective trains on adversarial examples), ``train/<part>`` for every part the
objective reports, per evaluation stage ``<stage>/loss``, ``<stage>/acc`` and
``<stage>/acc_pgd`` (accuracy under ``eval_attack``, by default PGD-10 on the cross-entropy: an
upper bound on robust accuracy, kept as the cheap per-epoch signal for checkpoint selection; the
figure to quote is AutoAttack's), and ``val/robust_gap``.

``val/robust_gap`` makes robust overfitting (Rice, Wong & Kolter, ICML 2020) visible while
training: the accuracy on the training attack's adversarial examples, counted at each step on
the weights of that step over every training batch since the previous validation (one epoch
with the default cadence), minus ``val/acc_pgd``. It is logged when the objective reports
adversarial logits and the evaluation attack is on; positive values mean the model is more
robust on its training images than on held-out ones.

An objective may ask to end training (``objective.stop_requested``, e.g. fast adversarial
training on catastrophic overfitting); the fit then stops after the current step.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from pytorch_lightning import LightningModule
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from attacks import PGD
from common.activations import count_relus, softplus_relus
from lightning_modules.backbones import (
    Activation,
    BackboneSpec,
    Normalize,
    backbone_label,
    build_backbone,
    resolve_backbone_spec,
)
from lightning_modules.rng import capture_rng_states, restore_rng_states
from losses import ERM, Objective


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss; the message names the step and the parts."""


def _default_optimizer(params: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3)


_PLAIN = (str, int, float, bool, type(None))


def _is_plain(value: Any) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _describe(value: Any) -> str:
    target = value if callable(value) and hasattr(value, "__qualname__") else type(value)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"


def _keep_plain_hparams(module: LightningModule) -> None:
    """Replace hyper-parameters that are objects by a description of their class.

    Run through ``train.py``, every hyper-parameter is already plain data (the resolved config,
    with ``class_path``/``init_args`` for the objective, attack and optimiser), so
    ``load_from_checkpoint`` rebuilds the module. Built in Python with objects, the checkpoint
    records which classes they were but never pickles them: checkpoints stay loadable with
    ``torch.load(weights_only=True)``, which never runs code from the file.
    """
    for store in (module._hparams, module._hparams_initial):
        for key, value in list(store.items()):
            if not _is_plain(value):
                store[key] = _describe(value)


def build_model(
    backbone: BackboneSpec | Any,
    num_classes: int,
    input_shape: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    activation: Activation = "relu",
    softplus_beta: float = 10.0,
    backbone_kwargs: dict[str, Any] | None = None,
) -> nn.Sequential:
    """The whole classifier as plain PyTorch: ``Normalize(mean, std)`` then the backbone.

    It takes images in [0, 1]; its state_dict keys are ``normalize.*`` and ``net.*``.
    ``backbone`` is any spec :func:`lightning_modules.backbones.build_backbone` accepts.
    """
    net = build_backbone(backbone, num_classes, input_shape, activation, softplus_beta, **(backbone_kwargs or {}))
    return nn.Sequential(OrderedDict(normalize=Normalize(mean, std), net=net))


class RobustClassifier(LightningModule):
    """Image classifier trained by a configurable objective, evaluated clean and under attack.

    Args:
        backbone: a built-in name ("small_cnn", "preact_resnet18", "wong2020_mnist",
            "madry2018_mnist", "zhang2019_mnist", "ismail2021_mnist", "wrn28_10", "wrn34_10"),
            "torchvision/<model name>", "timm/<model name>" (optional dependency),
            or any ``nn.Module`` class: in YAML a ``class_path``/``init_args`` node, in Python the
            class, a ``functools.partial`` of it or ``{"class_path": ..., "init_args": {...}}``.
            Its arguments named ``num_classes``, ``in_channels``, ``input_shape``, ``image_size``
            are set from the data (:mod:`lightning_modules.backbones`). Stored in the
            checkpoint as plain data: the name, or the class path and the init_args it was
            built with (:func:`lightning_modules.backbones.resolve_backbone_spec`).
        num_classes: outputs (set from the datamodule by ``train.py``).
        input_shape: (C, H, W) of one input (set from the datamodule).
        mean: per-channel mean of the normalisation layer (set from the datamodule).
        std: per-channel standard deviation of the normalisation layer (set from the datamodule).
        activation: "relu", or "softplus" to train with softplus(β) (Dombrowski et al. 2019).
        softplus_beta: β of the softplus activation.
        eval_activation: the activation during validation and test when it differs from
            ``activation`` (None: the same). With ``activation: relu, eval_activation: softplus``
            a ReLU network is evaluated with smooth gradients; with ``activation: softplus,
            eval_activation: relu`` it trains with softplus(β) and is evaluated (and exported)
            as the ReLU network. The stored network holds ReLUs unless both are softplus; the
            other phase swaps them for softplus(β) while it runs.
        backbone_kwargs: extra arguments of a named architecture (``width``, ``batch_norm`` ...);
            a ``class_path`` backbone takes them in its ``init_args``.
        objective: the training objective (default: ERM).
        eval_attack: the attack behind ``val/acc_pgd`` and ``test/acc_pgd`` (default: L∞ PGD-10 on
            the cross-entropy, ε = 8/255, α = 2/255, seeded so that evaluation is repeatable);
            None skips it. A cheap per-epoch monitor for checkpoint selection: with the
            cross-entropy loss it is an upper bound that overstates robustness where the softmax
            saturates (``loss: margin`` or ``dlr`` tighten it; quote AutoAttack, e.g. through
            ``callbacks.RobustnessEvaluator``).
        optimizer: a callable from parameters to an optimiser (YAML: ``class_path`` and
            ``init_args`` of any ``torch.optim`` class). Default: Adam, lr 1e-3.
        lr_scheduler: optional callable from an optimiser to a scheduler.
        scheduler_interval: step the scheduler every "epoch" or every "step".
        check_finite: stop training with :class:`DivergenceError` when the loss is not finite
            (one device-to-host sync per step).
    """

    def __init__(
        self,
        backbone: str | Callable[..., nn.Module] = "small_cnn",
        num_classes: int = 10,
        input_shape: Sequence[int] = (1, 28, 28),
        mean: Sequence[float] = (0.5,),
        std: Sequence[float] = (0.25,),
        activation: Activation = "relu",
        softplus_beta: float = 10.0,
        eval_activation: Activation | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
        objective: Objective | None = None,
        eval_attack: PGD | None = PGD(eps=8 / 255, step_size=2 / 255, steps=10, seed=0),  # noqa: B008
        optimizer: OptimizerCallable = _default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        check_finite: bool = True,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be one of ('epoch', 'step'), got {scheduler_interval!r}")
        if not softplus_beta > 0:
            raise ValueError(f"softplus_beta must be > 0, got {softplus_beta}")
        if eval_attack is not None and callable(getattr(eval_attack, "check_num_classes", None)):
            try:
                eval_attack.check_num_classes(num_classes)
            except ValueError as error:
                problem = str(error)
            else:
                problem = ""
            if problem:
                raise ValueError(f"eval_attack {problem}")
        if eval_activation not in (None, "relu", "softplus"):
            raise ValueError(f"eval_activation must be one of (None, 'relu', 'softplus'), got {eval_activation!r}")
        eval_activation = activation if eval_activation is None else eval_activation
        stored_activation = "softplus" if activation == eval_activation == "softplus" else "relu"
        self._softplus_during = {
            "train": activation == "softplus" and stored_activation == "relu",
            "eval": eval_activation == "softplus" and stored_activation == "relu",
        }
        # The CLI logs the whole resolved config once (callbacks.SaveConfigToRun); hparams still go
        # into every checkpoint, as plain data only (see _keep_plain_hparams).
        self.save_hyperparameters(logger=False)
        # Through train.py the hyper-parameter is already the plain config node (class_path and
        # init_args) while ``backbone`` is jsonargparse's factory; in Python it is what was passed.
        spec = resolve_backbone_spec(self.hparams.get("backbone", backbone), num_classes, input_shape)
        for store in (self._hparams, self._hparams_initial):
            store["backbone"] = spec
        _keep_plain_hparams(self)
        self.model = build_model(
            spec, num_classes, input_shape, mean, std, stored_activation, softplus_beta, backbone_kwargs
        )
        if any(self._softplus_during.values()) and count_relus(self.model) == 0:
            field = "activation" if self._softplus_during["train"] else "eval_activation"
            raise ValueError(
                f"{field}: softplus replaces the nn.ReLU modules of the backbone, and {backbone_label(spec)} has "
                "none (does it call F.relu?)"
            )
        self.softplus_beta = softplus_beta
        self.objective = objective if objective is not None else ERM()
        self.eval_attack = eval_attack
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.scheduler_interval = scheduler_interval
        self.check_finite = check_finite
        self._rng_states_to_restore: dict[str, Any] | None = None
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        # Sum-and-count states reduced by summation: exact under DDP with uneven shares, where
        # self.log(sync_dist=True) averages a truncated integer count of examples across ranks.
        self.eval_loss = nn.ModuleDict({s: MeanMetric() for s in ("val", "test")})
        self.train_acc_adv = MulticlassAccuracy(num_classes, average="micro")
        # (correct, seen) on adversarial training examples since the last validation, summed
        # over processes at every step, so every rank (and rank zero's checkpoint) holds the
        # global counts: a resumed run continues them exactly.
        self._robust_counts: Tensor | None = None
        self.eval_acc = nn.ModuleDict({s: MulticlassAccuracy(num_classes, average="micro") for s in ("val", "test")})
        self.eval_acc_pgd = nn.ModuleDict(
            {s: MulticlassAccuracy(num_classes, average="micro") for s in ("val", "test")}
        )

    def forward(self, x: Tensor) -> Tensor:
        """Logits for images ``x`` in [0, 1]."""
        return self.model(x)

    def _activation(self, phase: Literal["train", "eval"]) -> AbstractContextManager[Any]:
        """Softplus(β) in place of the ReLUs during ``phase`` when it differs from the stored net."""
        if self._softplus_during[phase]:
            return softplus_relus(self.model, self.softplus_beta)
        return nullcontext()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        with self._activation("train"):
            out = self.objective(self.model, x, y)
        if self.check_finite and not torch.isfinite(out.loss):
            raise DivergenceError(self._divergence_message(out.loss, out.logs))
        reason = getattr(self.objective, "stop_requested", None)
        if reason and not self.trainer.should_stop:
            rank_zero_warn(f"training stops after this step: {reason}")
            self.trainer.should_stop = True
        self.log("train/loss", out.loss.detach(), prog_bar=True)
        if out.logits is not None:
            self.train_acc(out.logits.detach(), y)
            self.log("train/acc", self.train_acc, prog_bar=True)
        if out.logits_adv is not None:
            self.train_acc_adv(out.logits_adv.detach(), y)
            self.log("train/acc_adv", self.train_acc_adv)
            self._count_robust(out.logits_adv.detach(), y)
        if out.logs:
            self.log_dict({f"train/{name}": value for name, value in out.logs.items()})
        return out.loss

    def _divergence_message(self, loss: Tensor, logs: dict[str, Tensor]) -> str:
        bad = [f"train/{name} = {value.item()}" for name, value in logs.items() if not torch.isfinite(value).all()]
        parts = ", ".join(bad) if bad else "no logged part (only the total)"
        return (
            f"training diverged at global step {self.global_step} (epoch {self.current_epoch}): "
            f"train/loss = {loss.item()}; non-finite parts: {parts}. Training stopped before the "
            "optimiser step; checkpoints saved earlier are untouched. Lower the learning rate or "
            "the regulariser weights, or try gradient clipping (trainer.gradient_clip_val)."
        )

    def _count_robust(self, logits_adv: Tensor, y: Tensor) -> None:
        """Add this step's (correct, seen) adversarial training examples, summed over processes."""
        counts = torch.stack([(logits_adv.argmax(dim=1) == y).sum(), torch.tensor(y.numel(), device=y.device)])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # torch's all-reduce, not strategy.reduce: that one adds a barrier, a host sync per step.
            dist.all_reduce(counts)
        previous = self._robust_counts
        self._robust_counts = counts if previous is None else previous.to(counts.device) + counts

    def on_validation_epoch_end(self) -> None:
        """Log ``val/robust_gap`` (see the module doc) and start the next count."""
        if self.trainer.sanity_checking or self.eval_attack is None or self._robust_counts is None:
            return
        if self.eval_acc_pgd["val"].update_count == 0:
            return
        train_robust = self._robust_counts[0].float() / self._robust_counts[1].float()
        val_robust = self.eval_acc_pgd["val"].compute()  # reduced over processes
        self.log("val/robust_gap", train_robust.to(val_robust.device) - val_robust.float())
        self._robust_counts = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_states"] = capture_rng_states()
        if self._robust_counts is not None:
            checkpoint["robust_gap_counts"] = self._robust_counts.tolist()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Restored right before the next training batch, not now: whatever runs in between
        # (sanity-check validation, callbacks' setup) must not shift the training streams.
        self._rng_states_to_restore = checkpoint.get("rng_states")
        counts = checkpoint.get("robust_gap_counts")
        self._robust_counts = None if counts is None else torch.tensor(counts, dtype=torch.long)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._rng_states_to_restore is not None:
            restore_rng_states(self._rng_states_to_restore)
            self._rng_states_to_restore = None

    def on_validation_epoch_start(self) -> None:
        # Fresh states made in this loop's grad mode: states made under inference mode (a
        # `validate` run) cannot be updated in place by a fit's validation, which runs without it.
        self.eval_loss["val"].reset()

    def on_test_epoch_start(self) -> None:
        self.eval_loss["test"].reset()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        with self._activation("eval"):
            self._evaluation_step("val", batch)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        with self._activation("eval"):
            self._evaluation_step("test", batch)

    def _evaluation_step(self, stage: str, batch: tuple[Tensor, Tensor]) -> None:
        """Clean loss and accuracy, and accuracy under ``eval_attack``.

        Lightning evaluates under ``torch.inference_mode()`` unless ``Trainer(inference_mode=
        False)``; the attack leaves inference mode and enables gradients itself, so
        ``acc_pgd`` is right either way.
        """
        x, y = batch
        logits = self.model(x)
        self.eval_loss[stage].update(F.cross_entropy(logits.float(), y), weight=y.shape[0])
        self.log(f"{stage}/loss", self.eval_loss[stage])
        self.eval_acc[stage](logits, y)
        self.log(f"{stage}/acc", self.eval_acc[stage], prog_bar=True)
        if self.eval_attack is not None:
            x_adv = self.eval_attack(self.model, x, y)
            self.eval_acc_pgd[stage](self.model(x_adv), y)
            self.log(f"{stage}/acc_pgd", self.eval_acc_pgd[stage], prog_bar=True)

    def monitorable_keys(self) -> list[str]:
        """What ``self.log`` records, as glob patterns: the metrics that ModelCheckpoint and
        EarlyStopping can monitor (``train.py`` refuses any other monitor before the run).

        ``train/*`` stands for the objective's parts, known only once it has run. Keep this in
        step with the ``self.log`` calls above (a test compares it with a real fit's metrics).
        """
        keys = ["train/loss", "train/acc", "train/*"]
        for stage in ("val", "test"):
            keys += [f"{stage}/loss", f"{stage}/acc"] + ([f"{stage}/acc_pgd"] if self.eval_attack is not None else [])
        return keys

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}
