"""The optimiser and the learning-rate schedule, built and run on a throwaway parameter first.

A recipe names any ``torch.optim`` optimiser and scheduler by ``class_path``; PyTorch checks
their arguments only when Lightning builds them, after the run's folders exist, and some
mistakes surface much later: ``StepLR(step_size=0)`` divides by zero at the end of the first
epoch, ``OneCycleLR(total_steps=...)`` shorter than the run fails when it runs out of steps,
``ExponentialLR(gamma=-0.5)`` turns the learning rate negative and trains uphill without a word.

Before any work, :func:`check_optimizer` builds the optimiser on one throwaway parameter and
:func:`check_schedule` builds the scheduler on it and steps it as many times as the run will
(up to :data:`MAX_SIMULATED_STEPS`), checking that every learning rate stays finite and >= 0.
Whatever the class, a refusal is reported against the configuration field that holds the
refused value (found by :func:`preflight.arguments.refused_arguments`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from preflight.arguments import defaults, import_class, non_finite, refused_arguments
from preflight.errors import ConfigError

MAX_SIMULATED_STEPS = 100_000
"""Scheduler steps simulated at most (about a second); longer runs are checked for this many."""

# What torch.optim accepts for the arguments its optimisers check, by argument name (the same
# rule in every optimiser that has the argument); said beside torch's own message.
ACCEPTED = {
    "lr": "a number >= 0",
    "eps": "a number >= 0",
    "weight_decay": "a number >= 0",
    "momentum": "a number >= 0",
    "betas": "two numbers in [0, 1)",
    "alpha": "a number >= 0",
    "rho": "a number in [0, 1]",
    "lr_decay": "a number >= 0",
    "initial_accumulator_value": "a number >= 0",
    "momentum_decay": "a number >= 0",
}


def _parameters() -> list[nn.Parameter]:
    return [nn.Parameter(torch.zeros(1))]


def _call(node: Mapping[str, Any] | None, arguments: Mapping[str, Any] | None = None) -> str:
    """``Name(arg=value, ...)`` of a config node, for messages."""
    if not node:
        return "it"
    name = str(node.get("class_path", "?")).rsplit(".", 1)[-1]
    args = arguments if arguments is not None else (node.get("init_args") or {})
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in args.items())})"


def _explain(field: str, node: Mapping[str, Any] | None, build: Callable[[dict[str, Any]], object], error: Exception) -> ConfigError:
    """A ConfigError for ``error``, against the argument whose value ``build`` refuses if one is."""
    message = f"{type(error).__name__}: {error}" if not str(error) else str(error)
    cls = import_class(str(node.get("class_path"))) if node else None
    arguments = dict((node or {}).get("init_args") or {})
    culprits = refused_arguments(build, cls, arguments) if cls is not None else []
    if len(culprits) == 1:
        (name,) = culprits
        accepted = f" (torch.optim accepts {ACCEPTED[name]})" if name in ACCEPTED else ""
        return ConfigError(f"{field}.init_args.{name}", f"{_call(node, {name: arguments[name]})} is refused: {message}{accepted}")
    return ConfigError(field, f"{_call(node, _given(cls, arguments))} is refused: {message}")


def _given(cls: Any, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments that differ from the class's defaults (what the recipe chose)."""
    base = defaults(cls) if cls is not None else {}
    return {k: v for k, v in arguments.items() if k not in base or base[k] != v}


def _check_finite(field: str, node: Mapping[str, Any] | None) -> None:
    arguments = (node or {}).get("init_args") or {}
    bad = non_finite(arguments)
    if bad:
        name = bad[0]
        raise ConfigError(f"{field}.init_args.{name}", f"{name} must be a finite number, got {arguments[name]!r}")


def check_optimizer(
    factory: Callable[[Any], torch.optim.Optimizer], node: Mapping[str, Any] | None, field: str = "model.optimizer"
) -> None:
    """Build the optimiser on a throwaway parameter.

    Args:
        factory: the model's optimiser factory (parameters -> optimiser).
        node: its configuration ``{class_path, init_args}`` (None when not configured by YAML).
        field: the node's configuration path.

    Raises:
        ConfigError: naming the refused argument (``model.optimizer.init_args.lr``) when the
            optimiser cannot be built, or an argument is NaN or infinite.
    """
    _check_finite(field, node)
    try:
        factory(_parameters())
    except Exception as error:  # noqa: BLE001 - any refusal, whatever the class raises
        cls = import_class(str(node.get("class_path"))) if node else None

        def build(arguments: dict[str, Any]) -> object:
            return cls(_parameters(), **arguments)  # type: ignore[misc]

        raise _explain(field, node, build, error) from error


def first_bad_learning_rate(
    scheduler: Any, optimizer: torch.optim.Optimizer, steps: int
) -> tuple[int, float] | None:
    """Step ``scheduler`` ``steps`` times; the first (step, learning rate) that is negative or
    not finite among those an optimiser step uses, or None.

    The run steps the scheduler after each of its ``steps`` optimiser steps (or epochs), so the
    learning rate left by the last scheduler step is never used: that step must not raise, but
    its value is not checked (a linear one-cycle schedule ends a rounding error below 0 there).

    Raises:
        ScheduleFailure: when a step raises, with the step's number.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()": intended here
        for step in range(1, steps + 1):
            try:
                scheduler.step()
            except Exception as error:  # noqa: BLE001 - whatever the scheduler raises
                raise ScheduleFailure(step, error) from error
            if step == steps:
                break
            for group in optimizer.param_groups:
                lr = float(group["lr"])
                if not (lr >= 0.0 and lr != float("inf")):
                    return step, lr
    return None


class ScheduleFailure(Exception):
    """A scheduler that raised at its ``step``-th step."""

    def __init__(self, step: int, error: Exception) -> None:
        super().__init__(f"step {step}: {type(error).__name__}: {error}")
        self.step = step
        self.error = error


def check_schedule(
    optimizer_factory: Callable[[Any], torch.optim.Optimizer],
    factory: Callable[[torch.optim.Optimizer], Any] | None,
    node: Mapping[str, Any] | None,
    steps: int,
    interval: str,
    field: str = "model.lr_scheduler",
) -> None:
    """Build the scheduler on a throwaway optimiser and step it as often as the run will.

    Args:
        optimizer_factory: the model's optimiser factory (already checked).
        factory: the model's scheduler factory (optimiser -> scheduler), or None (no schedule).
        node: its configuration ``{class_path, init_args}``.
        steps: the scheduler steps the run takes (capped at :data:`MAX_SIMULATED_STEPS`).
        interval: "step" or "epoch": what one scheduler step is, for the message.
        field: the node's configuration path.

    Raises:
        ConfigError: when the scheduler cannot be built, is a ``ReduceLROnPlateau`` (it needs a
            monitored metric, which RobustClassifier does not pass), fails within the run's
            steps, or drives a learning rate negative or to a non-finite value.
    """
    if factory is None:
        return
    _check_finite(field, node)
    steps = min(max(int(steps), 0), MAX_SIMULATED_STEPS)
    cls = import_class(str(node.get("class_path"))) if node else None
    described = _call(node, _given(cls, (node or {}).get("init_args") or {}))

    def run(make: Callable[[torch.optim.Optimizer], Any]) -> tuple[int, float] | None:
        optimizer = optimizer_factory(_parameters())
        scheduler = make(optimizer)
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            raise ConfigError(
                field,
                "ReduceLROnPlateau steps on a monitored metric, which RobustClassifier does not pass to it; "
                "choose a schedule by step or epoch (StepLR, MultiStepLR, CosineAnnealingLR, OneCycleLR, "
                "LinearLR, ...)",
            )
        return first_bad_learning_rate(scheduler, optimizer, steps)

    try:
        bad = run(factory)
    except ConfigError:
        raise
    except ScheduleFailure as failure:
        raise ConfigError(
            field,
            f"{described} fails at scheduler step {failure.step} of the {steps} this run takes (one per {interval}): "
            f"{type(failure.error).__name__}: {failure.error}",
        ) from failure.error
    except Exception as error:  # noqa: BLE001 - refused at construction, whatever the class raises

        def build(arguments: dict[str, Any]) -> object:
            return cls(optimizer_factory(_parameters()), **arguments)  # type: ignore[misc]

        raise _explain(field, node, build, error) from error
    if bad is not None:
        step, lr = bad
        raise ConfigError(
            field,
            f"{described} sets the learning rate to {lr} at scheduler step {step} (one per {interval}); "
            "learning rates must stay finite and >= 0",
        )
