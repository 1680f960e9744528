"""The GPU suite: robustlens' training, penalties, monitoring and AutoAttack on one GPU, in one command.

Everything runs on CIFAR-10-shaped synthetic images (3×32×32, 10 classes, ``datamodules.SyntheticShapes``
generated once in memory: no download, nothing from outside the machine) under L∞ ε = 8/255:

1. PGD-10 adversarial training (step 2/255, random start, model in eval mode during the attack, as
   ``attacks.PGD``; SGD lr 0.1, momentum 0.9, weight decay 5e-4) of PreAct ResNet-18 and
   WRN-34-10, images per second:
   - ``train.py fp32`` and ``train.py bf16-mixed``: ``train.main`` on a generated recipe
     (``lightning_modules.RobustClassifier`` + ``losses.PGDAdversarialTraining``, a real
     ``pytorch_lightning.Trainer`` fit; no logger, checkpoints, progress bar or validation);
   - ``hand bf16``, ``hand bf16 channels_last`` and ``hand bf16 channels_last compiled``: a plain
     loop over the training set held on the device, with its own PGD, in bf16 autocast, the last with
     ``torch.compile`` of the model (a failed compile is recorded with its reason; the suite goes on).
   Ratios are to ``hand bf16 channels_last``: the fastest plain-PyTorch loop without compile.
2. TRADES (β = 6, 10 steps) and PGD-AT + attribution stability (``losses.AttributionStability``
   on PGD-AT's own adversarial example, as ``configs/cifar10/pgd_at_stability.yaml``) through
   ``train.py`` in bf16-mixed on PreAct ResNet-18, relative to PGD-AT's step time in the same setting.
3. The monitoring callbacks' share of a fit: a short fit (PGD-10, bf16-mixed, validation of a
   few batches every epoch) with and without ExplanationMonitor, RobustnessEvaluator (a curve and
   AutoAttack fast at the end of fit) and SanityCheck configured as ``configs/quickstart.yaml``,
   adapted to ε = 8/255; share = 1 − (fit without) / (fit with). The share depends on the epoch's
   length (a CIFAR-10 epoch is 390 steps of 128, this one is a few steps): the JSON also holds the
   callbacks' own seconds, and the table the share they would have in a 50 000-image epoch.
4. AutoAttack (``attacks.AutoAttack``, fast and standard) seconds per 1 000 test images on the
   PreAct ResNet-18 that the ``train.py fp32`` row trained. AutoAttack attacks only the examples
   still standing, so its time grows with robust accuracy: on this briefly trained model most fall
   to the first attack and the figure is a floor for a robust model. The JSON holds every stage's
   examples attacked and seconds. Standard runs on fewer images (Square Attack is run one example
   at a time with the default per-example seeding) and is scaled to 1 000.
5. Peak GPU memory (``torch.cuda.max_memory_allocated``, reset before each row).

Every timing has a warm-up and is the median over several timed windows, each closed by
``torch.cuda.synchronize``. The table is printed and written, with a JSON of the raw numbers
(torch, CUDA, GPU, date, command), to ``benchmarks/gpu_suite_results/<date>-<device>.md`` and
``.json`` (or ``--out``)::

    PYTHONPATH=. python benchmarks/gpu_suite.py                     # on a GPU, about 5 minutes
    PYTHONPATH=. python benchmarks/gpu_suite.py --device cpu --toy  # toy sizes, seconds (the test)

``--device cuda`` (the default) without CUDA stops before any work with exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import platform
import re
import shlex
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "gpu_suite_results"
EPS, STEP = 8 / 255, 2 / 255
NUM_CLASSES, SHAPE = 10, (3, 32, 32)
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)  # SyntheticShapes' normalisation
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 5e-4
CIFAR_EPOCH_IMAGES = 50_000


@dataclass(frozen=True)
class Sizes:
    """How much of everything one run does."""

    batch: int
    pgd_steps: int
    warmup: int  # untimed steps before the first window
    windows: int  # timed windows; the median is reported
    window_steps: dict[str, int]  # steps per window, by model label
    models: dict[str, tuple[str, str, dict[str, Any]]]  # label -> (--compile name, backbone, backbone_kwargs)
    penalty_window_steps: int
    callback_epochs: int
    callback_steps: int  # training steps per epoch in the callback fits
    callback_val_batches: int
    callback_rounds: int
    probe: int  # probe images of the explanation monitor and sanity check
    curve_probe: int  # probe images of the robustness curve and the end-of-fit AutoAttack
    panels: int
    sanity_methods: tuple[str, ...]
    aa_fast_images: int
    aa_standard_images: int
    aa_pick_correct: bool  # attack correctly classified test images only (the toy's untrained model gets few right)
    eval_batch: int
    compile_backend: str

    @property
    def train_images(self) -> int:
        most = max(self.window_steps.values())
        return self.batch * max(self.warmup + self.windows * most, self.callback_steps)


FULL = Sizes(
    batch=128,
    pgd_steps=10,
    warmup=5,
    windows=3,
    window_steps={"PreAct ResNet-18": 10, "WRN-34-10": 4},
    models={"PreAct ResNet-18": ("preact_resnet18", "preact_resnet18", {}), "WRN-34-10": ("wrn34_10", "wrn34_10", {})},
    penalty_window_steps=5,
    callback_epochs=2,
    callback_steps=20,
    callback_val_batches=2,
    callback_rounds=2,
    probe=64,
    curve_probe=128,
    panels=8,
    sanity_methods=("saliency", "integrated_gradients", "edge"),
    aa_fast_images=1000,
    aa_standard_images=100,
    aa_pick_correct=False,
    eval_batch=256,
    compile_backend="inductor",
)

# On the CPU, in seconds: tiny networks, a batch of 4, one or two steps per measurement. The
# compiled row uses Dynamo with the eager backend (graph capture without code generation).
TOY = Sizes(
    batch=4,
    pgd_steps=2,
    warmup=1,
    windows=2,
    window_steps={"PreAct ResNet-18 (toy: width 4)": 1, "WRN-10-1 (toy)": 1},
    models={
        "PreAct ResNet-18 (toy: width 4)": ("preact_resnet18", "preact_resnet18", {"width": 4}),
        "WRN-10-1 (toy)": ("wrn34_10", "lightning_modules.wide_resnet.WideResNet", {"depth": 10, "widen_factor": 1}),
    },
    penalty_window_steps=1,
    callback_epochs=1,
    callback_steps=2,
    callback_val_batches=1,
    callback_rounds=1,
    probe=4,
    curve_probe=4,
    panels=2,
    sanity_methods=("saliency", "edge"),  # integrated gradients' cascade alone takes a minute on a busy CPU
    aa_fast_images=4,
    aa_standard_images=2,
    aa_pick_correct=True,
    eval_batch=8,
    compile_backend="eager",
)


@dataclass
class Row:
    """One line of the table; the raw numbers go to the JSON as they are."""

    section: str
    name: str
    model: str
    status: str = "ok"
    images_per_s: float | None = None
    step_ms: float | None = None  # median of the windows' seconds per step
    window_seconds: list[float] = field(default_factory=list)
    seconds_per_1000: float | None = None
    fit_seconds: dict[str, float] | None = None
    relative: float | None = None
    relative_to: str | None = None
    peak_memory_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- device, timing


def check_device(device: str) -> None:
    """Stop with exit status 2 before any work when the device asked for is not there."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        sys.stderr.write(
            "error: --device cuda, but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}). Run on a machine with an "
            "NVIDIA GPU, or use --device cpu --toy for the toy run.\n"
        )
        raise SystemExit(2)


def synchronize(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


@contextlib.contextmanager
def peak_memory(device: Any, row: Row) -> Iterator[None]:
    """Record ``torch.cuda.max_memory_allocated`` over the block into ``row`` (on CUDA only)."""
    import torch

    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        yield
    finally:
        if cuda:
            synchronize(device)
            row.peak_memory_bytes = int(torch.cuda.max_memory_allocated())


def fill_throughput(row: Row, window_seconds: list[float], steps: int, batch: int) -> None:
    row.window_seconds = window_seconds
    per_step = statistics.median(window_seconds) / steps
    row.step_ms = 1000 * per_step
    row.images_per_s = batch / per_step


class WindowTimer:
    """Seconds of ``windows`` runs of ``steps`` training steps after ``warmup`` untimed ones."""

    def __init__(self, device: Any, warmup: int, windows: int, steps: int) -> None:
        self.device, self.warmup, self.windows, self.steps = device, warmup, windows, steps
        self.seconds: list[float] = []
        self._start = 0.0

    @property
    def total_steps(self) -> int:
        return self.warmup + self.windows * self.steps

    def before(self, step: int) -> None:
        if step >= self.warmup and (step - self.warmup) % self.steps == 0:
            synchronize(self.device)
            self._start = time.perf_counter()

    def after(self, step: int) -> None:
        if step >= self.warmup and (step - self.warmup) % self.steps == self.steps - 1:
            synchronize(self.device)
            self.seconds.append(time.perf_counter() - self._start)


def lightning_window_timer(timer: WindowTimer) -> Any:
    from pytorch_lightning import Callback

    class _Timer(Callback):
        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            timer.before(trainer.global_step)

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            timer.after(trainer.global_step - 1)  # the optimiser step has advanced global_step

    return _Timer()


# ----------------------------------------------------------------------------- data


class Data:
    """The synthetic splits, generated once and handed to every datamodule and loop."""

    def __init__(self, sizes: Sizes) -> None:
        from datamodules import SyntheticShapes

        self.module_args = {
            "image_size": SHAPE[1], "channels": SHAPE[0], "num_classes": NUM_CLASSES,
            "train_size": sizes.train_images, "val_size": max(sizes.eval_batch * sizes.callback_val_batches, 2 * sizes.curve_probe),
            "test_size": max(sizes.aa_fast_images, sizes.aa_standard_images, 64), "seed": 0,
        }  # fmt: skip
        self.module = SyntheticShapes(**self.module_args, batch_size=sizes.batch, eval_batch_size=sizes.eval_batch)
        self.module.setup("fit")
        self.module.setup("test")
        self.splits = dict(self.module._datasets)

    def share_with(self, datamodule: Any) -> None:
        """Give a datamodule built by ``train.py`` (same arguments) the splits generated here."""
        datamodule._datasets.update(self.splits)

    def train_tensors(self) -> tuple[Any, Any]:
        data = self.splits["train"].data
        return data.images, data.labels


# ----------------------------------------------------------------------------- train.py rows


def pgd_spec(steps: int) -> dict[str, Any]:
    return {"class_path": "attacks.PGD", "init_args": {"eps": EPS, "step_size": STEP, "steps": steps}}


def objective_spec(kind: str, steps: int) -> dict[str, Any]:
    pgd_at = {"class_path": "losses.PGDAdversarialTraining", "init_args": {"attack": pgd_spec(steps)}}
    if kind == "pgd_at":
        return pgd_at
    if kind == "trades":
        return {"class_path": "losses.TRADES", "init_args": {"beta": 6.0, "attack": pgd_spec(steps)}}
    if kind == "pgd_at+attribution_stability":
        stability = {"class_path": "losses.AttributionStability", "init_args": {"perturbation": "ce_adversarial"}}
        parts = [  # one PGD example per step for both parts: declared, shared_attack
            {"objective": {"class_path": "losses.PGDAdversarialTraining"}, "weight": 1.0, "share_attack": True},
            {"objective": stability, "weight": 1.0, "share_attack": True},
        ]
        return {"class_path": "losses.WeightedSum", "init_args": {"parts": parts, "shared_attack": pgd_spec(steps)}}
    raise ValueError(f"objective kind must be one of pgd_at, trades, pgd_at+attribution_stability, got {kind!r}")


def monitoring_callbacks(sizes: Sizes) -> list[dict[str, Any]]:
    """configs/quickstart.yaml's monitoring callbacks at ε = 8/255 (its 0.1 is for 28×28 shapes)."""
    return [
        {
            "class_path": "callbacks.ExplanationMonitor",
            "init_args": {
                "methods": ["saliency", "integrated_gradients"],
                "metrics": ["topk_intersection@noise", "spearman@noise", "relevance_mass", "pointing_game"],
                "metric_options": {"topk_intersection@noise": {"eps": EPS}, "spearman@noise": {"eps": EPS}},
                "probe_size": sizes.probe, "every_n_epochs": 1, "panels": sizes.panels,
            },
        },
        {
            "class_path": "callbacks.RobustnessEvaluator",
            "init_args": {
                "eps": [0.0, EPS / 2, EPS, 1.5 * EPS],
                "attacks": [{"class_path": "attacks.PGD", "init_args": {"eps": EPS, "step_size": EPS / 4, "steps": 10, "random_start": False}}],
                "probe_size": sizes.curve_probe, "every_n_epochs": 2,
            },
        },
        {
            "class_path": "callbacks.RobustnessEvaluator",
            "init_args": {
                "eps": [EPS], "attacks": [{"class_path": "attacks.AutoAttack", "init_args": {"eps": EPS, "version": "fast"}}],
                "probe_size": sizes.curve_probe, "probe_seed": 2, "at_fit_end": True, "prefix": "robust_final",
            },
        },
        {
            "class_path": "callbacks.SanityCheck",
            "init_args": {"methods": list(sizes.sanity_methods), "probe_size": sizes.probe},
        },
    ]  # fmt: skip


def recipe(
    sizes: Sizes, data: Data, device: str, model: str, objective: str, precision: str, max_steps: int,
    root: Path, callbacks: list[dict[str, Any]] | None = None, epochs: int = 1,
) -> dict[str, Any]:
    """A train.py recipe: the model, objective and data of one row, nothing else in the fit."""
    _, backbone, kwargs = sizes.models[model]
    validate = callbacks is not None
    trainer: dict[str, Any] = {
        "accelerator": "gpu" if device == "cuda" else "cpu", "devices": 1, "precision": precision,
        "max_epochs": epochs, "max_steps": max_steps, "inference_mode": False,
        "limit_train_batches": sizes.callback_steps if validate else max_steps,
        "limit_val_batches": sizes.callback_val_batches if validate else 0, "num_sanity_val_steps": 0,
        "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
        "enable_model_summary": False, "callbacks": callbacks or [], "default_root_dir": str(root),
    }  # fmt: skip
    model_args: dict[str, Any] = {
        "backbone": backbone, "backbone_kwargs": kwargs, "objective": objective_spec(objective, sizes.pgd_steps),
        "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": LR, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY}},
    }  # fmt: skip
    if validate:  # the quickstart's val/acc_pgd, a PGD-10 on the cross-entropy
        model_args["eval_attack"] = {"class_path": "attacks.PGD", "init_args": {"eps": EPS, "step_size": STEP, "steps": 10, "seed": 0}}
    else:
        model_args["eval_attack"] = None
    data_args = {**data.module_args, "batch_size": sizes.batch, "eval_batch_size": sizes.eval_batch}
    return {
        "seed_everything": 0, "trainer": trainer, "model": model_args,
        "data": {"class_path": "datamodules.SyntheticShapes", "init_args": data_args},
    }  # fmt: skip


def build_cli(config: dict[str, Any], root: Path, data: Data) -> Any:
    import yaml

    import train

    path = root / f"recipe-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    argv, sys.argv = sys.argv, sys.argv[:1]  # the suite's own options are not the recipe's
    try:
        cli = train.main(["--config", str(path)], run=False)
    finally:
        sys.argv = argv
    data.share_with(cli.datamodule)
    return cli


def lightning_row(
    row: Row, sizes: Sizes, data: Data, device: str, root: Path, objective: str, precision: str, steps: int
) -> Any:
    """Fit through train.py and time its steps; returns the trained classifier (plain nn.Module)."""
    timer = WindowTimer(device, sizes.warmup, sizes.windows, steps)
    cli = build_cli(recipe(sizes, data, device, row.model, objective, precision, timer.total_steps, root), root, data)
    cli.trainer.callbacks.append(lightning_window_timer(timer))
    with peak_memory(device, row):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    if len(timer.seconds) != sizes.windows:
        raise RuntimeError(f"timed {len(timer.seconds)} of {sizes.windows} windows: the fit stopped early")
    fill_throughput(row, timer.seconds, steps, sizes.batch)
    row.extra["precision"] = precision
    return cli.model.model


# ----------------------------------------------------------------------------- hand-written loop


class HandLoop:
    """PGD-AT as plain PyTorch: the data on the device, its own PGD, bf16 autocast, SGD."""

    def __init__(self, sizes: Sizes, data: Data, device: str, model: str, channels_last: bool, compile_model: bool) -> None:
        import torch

        from lightning_modules import build_model

        _, backbone, kwargs = sizes.models[model]
        torch.manual_seed(0)
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.module = build_model(backbone, NUM_CLASSES, SHAPE, MEAN, STD, backbone_kwargs=kwargs)
        self.module.to(self.device, memory_format=self.memory_format)
        self.net = torch.compile(self.module, backend=sizes.compile_backend) if compile_model else self.module
        self.optimizer = torch.optim.SGD(self.module.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
        images, labels = data.train_tensors()
        # The whole training set on the device, as fast hand-written CIFAR loops keep it: the
        # floor against which train.py's DataLoader (pinned batches copied each step) is a cost.
        self.images, self.labels = images.to(self.device), labels.to(self.device)
        self.order = torch.randperm(labels.shape[0], generator=torch.Generator().manual_seed(0)).to(self.device)
        self.batch, self.steps = sizes.batch, sizes.pgd_steps

    def autocast(self) -> Any:
        import torch

        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def pgd(self, x: Any, y: Any) -> Any:
        import torch
        import torch.nn.functional as F

        self.module.eval()
        x_adv = (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(0.0, 1.0)
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            with self.autocast():
                loss = F.cross_entropy(self.net(x_adv).float(), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, [x_adv])
            x_adv = x_adv.detach() + STEP * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - EPS), x + EPS).clamp(0.0, 1.0)
        self.module.train()
        return x_adv.detach()

    def step(self, index: int) -> None:
        import torch.nn.functional as F

        n = self.labels.shape[0]
        pick = self.order[(index * self.batch) % n : (index * self.batch) % n + self.batch]
        x = self.images[pick].contiguous(memory_format=self.memory_format)
        y = self.labels[pick]
        x_adv = self.pgd(x, y)
        with self.autocast():
            loss = F.cross_entropy(self.net(x_adv).float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def run(self, timer: WindowTimer) -> None:
        for index in range(timer.total_steps):
            timer.before(index)
            self.step(index)
            timer.after(index)


def hand_row(row: Row, sizes: Sizes, data: Data, device: str, steps: int, channels_last: bool, compile_model: bool) -> None:
    timer = WindowTimer(device, sizes.warmup, sizes.windows, steps)
    with peak_memory(device, row):
        loop = HandLoop(sizes, data, device, row.model, channels_last, compile_model)
        loop.run(timer)
    fill_throughput(row, timer.seconds, steps, sizes.batch)
    row.extra["precision"] = "bf16 autocast"
    if compile_model:
        row.extra["compile_backend"] = sizes.compile_backend


# ----------------------------------------------------------------------------- callbacks, AutoAttack


def callback_rows(rows: list[Row], sizes: Sizes, data: Data, device: str, root: Path, step_seconds: float | None) -> None:
    """The fits with and without the monitoring callbacks; ``step_seconds`` (PGD-AT's step time in
    bf16-mixed, measured alone) scales the callbacks' own time to a 50 000-image epoch."""
    model = next(iter(sizes.models))
    fits: dict[str, list[float]] = {"without": [], "with": []}
    own: list[dict[str, float]] = []
    memory: dict[str, int | None] = {}
    for round_index in range(sizes.callback_rounds):
        order = ("without", "with") if round_index % 2 == 0 else ("with", "without")
        for mode in order:
            callbacks = monitoring_callbacks(sizes) if mode == "with" else []
            config = recipe(
                sizes, data, device, model, "pgd_at", "bf16-mixed", sizes.callback_epochs * sizes.callback_steps,
                root, callbacks=callbacks, epochs=sizes.callback_epochs,
            )  # fmt: skip
            cli = build_cli(config, root, data)
            probe = Row("", "", "")
            with peak_memory(device, probe):
                synchronize(device)
                start = time.perf_counter()
                cli.trainer.fit(cli.model, datamodule=cli.datamodule)
                synchronize(device)
                fits[mode].append(time.perf_counter() - start)
            memory[mode] = probe.peak_memory_bytes
            if mode == "with":
                own.append({
                    (f"{type(c).__name__} ({c.prefix})" if hasattr(c, "prefix") else type(c).__name__): float(c.seconds)
                    for c in cli.trainer.callbacks if hasattr(c, "seconds") and hasattr(c, "probe")
                })  # fmt: skip
    without, with_ = statistics.median(fits["without"]), statistics.median(fits["with"])
    steps = sizes.callback_epochs * sizes.callback_steps
    per_step = step_seconds or without / steps  # the fallback includes validation and set-up: an upper bound
    own_median = {name: statistics.median(o[name] for o in own) for name in own[0]}
    per_epoch = sum(v for k, v in own_median.items() if not k.endswith("(robust_final)") and "SanityCheck" not in k) / sizes.callback_epochs
    cifar_epoch = per_step * CIFAR_EPOCH_IMAGES / sizes.batch
    for mode in ("without", "with"):
        row = Row("callbacks", f"fit {mode} monitoring callbacks", model, peak_memory_bytes=memory[mode])
        row.fit_seconds = {"median": statistics.median(fits[mode]), **{f"round {i + 1}": s for i, s in enumerate(fits[mode])}}
        row.extra = {"epochs": sizes.callback_epochs, "steps_per_epoch": sizes.callback_steps, "precision": "bf16-mixed"}
        if mode == "with":
            row.relative, row.relative_to = 1.0 - without / with_, "share of the fit"
            row.extra.update({
                "callback_own_seconds": own_median,
                "per_epoch_callback_seconds": per_epoch,
                "share_in_50k_image_epoch": per_epoch / (per_epoch + cifar_epoch),
            })  # fmt: skip
        rows.append(row)


def autoattack_row(
    row: Row, model: Any, data: Data, device: str, version: str, images: int, batch: int, pick_correct: bool
) -> None:
    import torch

    from attacks import AutoAttack

    test = data.splits["test"].data
    model.to(device).eval()
    x, y = test.images.to(device), test.labels.to(device)
    if pick_correct:  # so that the attacks run at all (AutoAttack skips misclassified inputs)
        with torch.no_grad():
            correct = (model(x).argmax(1) == y).nonzero().squeeze(1)
        wrong = (~torch.isin(torch.arange(y.numel(), device=y.device), correct)).nonzero().squeeze(1)
        chosen = torch.cat([correct, wrong])[:images]
        x, y = x[chosen], y[chosen]
        row.extra["picked"] = "correctly classified test images first"
    x, y = x[:images], y[:images]
    attack = AutoAttack(eps=EPS, version=version)  # type: ignore[arg-type]
    stages: list[dict[str, Any]] = []
    robust = 0
    with peak_memory(device, row):
        synchronize(device)
        start = time.perf_counter()
        for begin in range(0, images, batch):
            x_adv = attack(model, x[begin : begin + batch], y[begin : begin + batch])
            stages += [asdict(s) for s in attack.stages]
            with torch.no_grad():
                robust += int((model(x_adv).argmax(1) == y[begin : begin + batch]).sum())
        synchronize(device)
        seconds = time.perf_counter() - start
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    row.seconds_per_1000 = 1000 * seconds / images
    row.extra |= {
        "images": images, "seconds": seconds, "clean_accuracy": clean, "robust_accuracy": robust / images,
        "stages": stages, "scaled_to_1000": images != 1000,
    }  # fmt: skip


# ----------------------------------------------------------------------------- the suite


def guarded(rows: list[Row], row: Row, work: Callable[[], Any], required: bool = True) -> Any:
    """Run one measurement; a failure is recorded in the row (its first line, and the traceback in
    the JSON) and the suite goes on."""
    print(f"  {row.section}: {row.name} ({row.model}) ...", flush=True)
    rows.append(row)
    started = time.perf_counter()
    try:
        return work()
    except Exception as error:  # noqa: BLE001 - recorded, reported, and (if required) the exit status says so
        row.status = f"failed: {type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"[:300]
        row.extra["traceback"] = traceback.format_exc()
        row.extra["required"] = required
        print(f"    {row.status}", flush=True)
        return None
    finally:
        row.extra["wall_seconds"] = time.perf_counter() - started  # the whole measurement, set-up included


def run_suite(sizes: Sizes, device: str, compile_models: list[str]) -> list[Row]:
    import gc

    import torch

    rows: list[Row] = []
    data = Data(sizes)
    trained = None
    with tempfile.TemporaryDirectory(prefix="gpu-suite-") as folder:
        root = Path(folder)
        for model, steps in sizes.window_steps.items():
            section = f"PGD-{sizes.pgd_steps} AT"
            fp32 = Row(section, "train.py fp32", model)
            net = guarded(rows, fp32, lambda: lightning_row(fp32, sizes, data, device, root, "pgd_at", "32-true", steps))
            if trained is None and net is not None:
                trained = net.to("cpu")  # kept for AutoAttack, off the GPU meanwhile
            bf16 = Row(section, "train.py bf16-mixed", model)
            guarded(rows, bf16, lambda: lightning_row(bf16, sizes, data, device, root, "pgd_at", "bf16-mixed", steps))
            plain = Row(section, "hand bf16", model)
            guarded(rows, plain, lambda: hand_row(plain, sizes, data, device, steps, False, False))
            cl = Row(section, "hand bf16 channels_last", model)
            guarded(rows, cl, lambda: hand_row(cl, sizes, data, device, steps, True, False))
            compiled = Row(section, "hand bf16 channels_last compiled", model)
            if model in compile_models:
                guarded(rows, compiled, lambda: hand_row(compiled, sizes, data, device, steps, True, True), required=False)
            else:
                compiled.status = "not run (--compile leaves this model out)"
                rows.append(compiled)
            if torch._dynamo is not None:
                torch._dynamo.reset()
            for row in (fp32, bf16, plain, compiled):
                if row.images_per_s and cl.images_per_s:
                    row.relative, row.relative_to = row.images_per_s / cl.images_per_s, "hand bf16 channels_last (images/s)"
            if cl.images_per_s:
                cl.relative, cl.relative_to = 1.0, "hand bf16 channels_last (images/s)"
            gc.collect()

        model = next(iter(sizes.models))
        reference = Row("penalties", f"PGD-{sizes.pgd_steps} AT (train.py bf16-mixed)", model)
        guarded(rows, reference, lambda: lightning_row(reference, sizes, data, device, root, "pgd_at", "bf16-mixed", sizes.penalty_window_steps))
        for kind, label in (("trades", f"TRADES β=6, {sizes.pgd_steps} steps"), ("pgd_at+attribution_stability", "PGD-AT + attribution stability")):
            row = Row("penalties", f"{label} (train.py bf16-mixed)", model)
            guarded(rows, row, lambda r=row, k=kind: lightning_row(r, sizes, data, device, root, k, "bf16-mixed", sizes.penalty_window_steps))
            if row.step_ms and reference.step_ms:
                row.relative, row.relative_to = row.step_ms / reference.step_ms, "PGD-AT step time"
        if reference.step_ms:
            reference.relative, reference.relative_to = 1.0, "PGD-AT step time"
        gc.collect()

        guarded(rows, Row("callbacks", "monitoring callbacks (both fits)", model), lambda: callback_rows(rows, sizes, data, device, root, reference.step_ms and reference.step_ms / 1000))
        rows[:] = [r for r in rows if not (r.name == "monitoring callbacks (both fits)" and r.status == "ok")]

        for version, images in (("fast", sizes.aa_fast_images), ("standard", sizes.aa_standard_images)):
            row = Row("AutoAttack", f"AutoAttack {version}, ε = 8/255", model)
            if trained is None:
                row.status = "not run: the train.py fp32 fit that trains its model failed"
                rows.append(row)
                continue
            guarded(rows, row, lambda r=row, v=version, n=images: autoattack_row(r, trained, data, device, v, n, sizes.eval_batch, sizes.aa_pick_correct))
    return rows


# ----------------------------------------------------------------------------- output


def _memory(row: Row, device: str) -> str:
    if device != "cuda":
        return "n/a (CPU)"
    return "—" if row.peak_memory_bytes is None else f"{row.peak_memory_bytes / 2**30:.2f} GiB"


def _cells(row: Row, device: str) -> list[str]:
    if not row.status.startswith("ok"):
        return [row.section, row.name, row.model, "—", "—", "—", _memory(row, device), row.status]
    throughput, time_, relative, notes = "—", "—", "—", ""
    if row.images_per_s is not None:
        throughput, time_ = f"{row.images_per_s:,.0f} img/s", f"{row.step_ms:.1f} ms/step"
    if row.seconds_per_1000 is not None:
        e = row.extra
        time_ = f"{row.seconds_per_1000:.1f} s / 1 000 img"
        notes = f"{e['images']} images{', scaled to 1 000' if e['scaled_to_1000'] else ''}; clean {100 * e['clean_accuracy']:.1f} %, robust {100 * e['robust_accuracy']:.1f} %"
        if "picked" in e:
            notes += f" ({e['picked']})"
    if row.fit_seconds is not None:
        time_ = f"fit {row.fit_seconds['median']:.2f} s"
        notes = f"{row.extra['epochs']} epoch(s) of {row.extra['steps_per_epoch']} steps"
        if row.relative is not None:
            notes += f"; callbacks' own {row.extra['per_epoch_callback_seconds']:.2f} s/epoch → {100 * row.extra['share_in_50k_image_epoch']:.1f} % of a 50 000-image epoch"
    if row.relative is not None:
        relative = f"{100 * row.relative:.1f} % {row.relative_to}" if row.relative_to == "share of the fit" else f"{row.relative:.2f}× {row.relative_to}"
    if "compile_backend" in row.extra:
        notes = f"torch.compile backend {row.extra['compile_backend']}"
    return [row.section, row.name, row.model, throughput, time_, relative, _memory(row, device), notes]


def markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    header = ["measurement", "loop / objective", "model", "throughput", "time", "relative", "peak GPU memory", "notes"]
    lines = [
        f"# GPU suite, {meta['date']}, {meta['device_name']}",
        "",
        f"`{meta['command']}`",
        "",
        f"torch {meta['torch']}, CUDA {meta['cuda']}, {meta['sizes_name']} sizes: batch {meta['sizes']['batch']}, "
        f"PGD-{meta['sizes']['pgd_steps']} (L∞ ε = 8/255, step 2/255), {meta['sizes']['warmup']} warm-up step(s), "
        f"median of {meta['sizes']['windows']} timed windows (CUDA-synchronised). Synthetic CIFAR-10-shaped data "
        "(3×32×32, 10 classes). AutoAttack's time grows with robust accuracy (only standing examples are attacked): "
        "on these briefly trained models it is a floor. Total wall time "
        f"{meta['total_seconds']:.0f} s.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(_cells(row, meta["device"])) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def environment(device: str, toy: bool, argv: list[str], sizes: Sizes) -> dict[str, Any]:
    import pytorch_lightning
    import torch

    name = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"),
        "started_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "PYTHONPATH=. python benchmarks/gpu_suite.py " + shlex.join(argv),
        "device": device, "device_name": name, "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device == "cuda" else None,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32, "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "lightning": pytorch_lightning.__version__, "python": platform.python_version(),
        "sizes_name": "toy" if toy else "full", "sizes": asdict(sizes),
    }  # fmt: skip


def default_out(meta: dict[str, Any]) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", meta["device_name"].lower()).strip("-") if meta["device"] == "cuda" else "cpu-toy" if meta["sizes_name"] == "toy" else "cpu"
    return RESULTS_DIR / f"{meta['date']}-{slug}.md"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--toy", action="store_true", help="toy sizes (tiny networks, batch 4): the CPU test")
    parser.add_argument(
        "--compile", nargs="+", default=None, metavar="MODEL",
        help="models whose hand loop is also timed under torch.compile: preact_resnet18, wrn34_10, all or none "
        "(default: all; --compile preact_resnet18 saves WRN-34-10's compile time; the toy run compiles with "
        "Dynamo's eager backend, its WRN-10-1 standing for wrn34_10)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="the Markdown file to write (the JSON goes beside it, .json)")
    args = parser.parse_args(argv)
    allowed = {"preact_resnet18", "wrn34_10", "all", "none"}
    if args.compile is not None and not set(args.compile) <= allowed:
        parser.error(f"--compile: each value must be one of {sorted(allowed)}, got {args.compile}")
    if args.out is not None and args.out.suffix != ".md":
        parser.error(f"--out must name a .md file (the JSON is written beside it), got {str(args.out)!r}")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    check_device(args.device)
    import logging

    import torch

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):  # the fits' banners
        logging.getLogger(name).setLevel(logging.WARNING)

    sizes = TOY if args.toy else FULL
    wanted = {"all"} if args.compile is None else set(args.compile)
    compile_models = [] if "none" in wanted else [
        label for label, (name, _, _) in sizes.models.items() if "all" in wanted or name in wanted
    ]  # fmt: skip
    meta = environment(args.device, args.toy, argv, sizes)
    out = args.out or default_out(meta)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.toy and args.device == "cpu":
        torch.set_num_threads(1)  # tiny tensors: a second thread costs more than it gives, and waits on a busy core
    print(f"{meta['command']}\n{meta['device_name']}, torch {meta['torch']}, CUDA {meta['cuda']}", flush=True)
    start = time.perf_counter()
    rows = run_suite(sizes, args.device, compile_models)
    meta["total_seconds"] = time.perf_counter() - start
    table = markdown(rows, meta)
    print()
    print(table)
    out.write_text(table)
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps({**meta, "rows": [asdict(r) for r in rows]}, indent=2, default=_json_default) + "\n")
    print(f"written: {out} and {json_path}")
    failed = [r for r in rows if r.status.startswith("failed") and r.extra.get("required", True)]
    return 1 if failed else 0


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return str(value)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
