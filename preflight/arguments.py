"""Find which argument a class refuses, for any class, by building it again without each one.

PyTorch and Lightning check their arguments with messages such as ``Invalid learning rate:
-0.1`` that do not say which configuration field holds the value. :func:`refused_arguments`
finds it without knowing the class: it builds the object again with each given argument reset
to the class's default, one at a time; the arguments whose reset makes the error go away are the
ones refused.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any


def import_class(class_path: str) -> type | None:
    """The class at the dotted ``class_path``, or None when it cannot be imported."""
    module_name, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return None


def defaults(cls: Callable[..., Any]) -> dict[str, Any]:
    """The default value of every argument of ``cls`` that has one."""
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return {}
    return {name: p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty}


def refused_arguments(build: Callable[[dict[str, Any]], object], cls: Callable[..., Any], arguments: Mapping[str, Any]) -> list[str]:
    """The names among ``arguments`` that ``build`` refuses.

    Args:
        build: builds the object from a full set of arguments; raises when it refuses them.
        cls: the class being built (its signature gives the defaults).
        arguments: the arguments as configured.

    Returns:
        Each argument whose reset to the class's default (alone) lets ``build`` succeed; empty
        when no single argument explains the failure (arguments without a default, or two
        arguments that conflict only together).
    """
    found = []
    for name, default in defaults(cls).items():
        if name not in arguments or _same(arguments[name], default):
            continue
        trial = {**arguments, name: default}
        try:
            build(trial)
        except Exception:  # noqa: BLE001 - any refusal means this argument alone is not the cause
            continue
        found.append(name)
    return found


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - tensors and other objects without a plain ==
        return a is b


def non_finite(arguments: Mapping[str, Any]) -> list[str]:
    """The names of ``arguments`` that hold a NaN or infinite number (also inside lists)."""

    def bad(value: Any) -> bool:
        if isinstance(value, float):
            return not math.isfinite(value)
        if isinstance(value, (list, tuple)):
            return any(bad(v) for v in value)
        return False

    return [name for name, value in arguments.items() if bad(value)]
