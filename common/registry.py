"""Names for classes, filled where the classes are defined.

One idiom for every family that recipes, callbacks and the report name by a string (attribution
methods, explanation metrics): the family's base class owns a :class:`NameRegistry`, and a
subclass joins it by naming itself in its class statement::

    class Saliency(GradientAttribution, name="saliency"): ...

so adding a member is one file (plus, for a member of the package, one export line), and every
list of names (defaults, ``--help``, error messages, tests that sweep the family) is read from the
registry rather than written out by hand. A name may also stand for a class with some
constructor arguments fixed (``register("vargrad", SmoothGrad, kind="vargrad")``).

A member defined outside the package is found by its import path too
(``"my_project.metrics.CentreMass"``): the module is imported, which registers the class, so a
recipe or a report run in a fresh process can name it without any import of its own.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered name: the class it builds and the arguments the name fixes."""

    name: str
    cls: type[T]
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def options(self) -> tuple[str, ...]:
        """The constructor arguments a caller may set (every one the name does not fix)."""
        return tuple(name for name in self.defaults())

    def defaults(self) -> dict[str, Any]:
        """The constructor arguments a caller may set, with their defaults (``inspect.Parameter.empty``
        for a required one)."""
        return {p.name: p.default for p in init_parameters(self.cls) if p.name not in self.fixed}

    def build(self, **kwargs: Any) -> T:
        """``cls(**fixed, **kwargs)``; a ValueError names the options when one is unknown."""
        allowed = self.options()
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise ValueError(f"{self.name!r} options must be among {allowed}, got {unknown}")
        return self.cls(**self.fixed, **kwargs)


class NameRegistry(Generic[T]):
    """Names -> classes of one family, in the order they were registered.

    Args:
        kind: what a name stands for, as error messages should say it ("method", "metric").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, cls: type[T], **fixed: Any) -> None:
        """Register ``name`` for ``cls`` (with ``fixed`` constructor arguments).

        Registering a name again for a class of the same module and qualified name replaces it
        (a module reloaded, a notebook cell run twice); for any other class it is an error, so
        two members never silently share a name.
        """
        if not isinstance(name, str) or not name or name != name.strip():
            raise ValueError(f"a {self.kind} name must be a non-empty string without surrounding spaces, got {name!r}")
        old = self._entries.get(name)
        if old is not None and _identity(old.cls) != _identity(cls):
            raise ValueError(
                f"{self.kind} name {name!r} is already registered for {_identity(old.cls)}; "
                f"{_identity(cls)} must choose another name"
            )
        self._entries[name] = Entry(name, cls, dict(fixed))

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order."""
        return tuple(self._entries)

    def entry(self, name: str) -> Entry[T]:
        """The entry of ``name`` (a registered name, or the import path ``module.Class`` of a
        registered class); a ValueError names the allowed values when there is none."""
        if not isinstance(name, str):
            raise ValueError(f"{self.kind} must be one of {self.names()}, got {name!r}")
        if name not in self._entries and "." in name:
            found = self._by_import_path(name)
            if found is not None:
                return found
        if name not in self._entries:
            raise ValueError(
                f"{self.kind} must be one of {self.names()} or the import path of a registered class, got {name!r}"
            )
        return self._entries[name]

    def _by_import_path(self, path: str) -> Entry[T] | None:
        module_name, _, attribute = path.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            return None
        cls = getattr(module, attribute, None)
        for entry in self._entries.values():
            if entry.cls is cls and not entry.fixed:
                return entry
        return None

    def name_of(self, name: str) -> str:
        """The registered name ``name`` stands for (itself, or the name of the class at an import path)."""
        return self.entry(name).name

    def check(self, name: str) -> None:
        """Raise the ValueError of :meth:`entry` when ``name`` is not registered."""
        self.entry(name)

    def build(self, name: str, **kwargs: Any) -> T:
        """The member called ``name``, configured by ``kwargs``."""
        return self.entry(name).build(**kwargs)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def init_parameters(cls: type) -> list[inspect.Parameter]:
    """The named parameters of ``cls``'s constructor (not ``*args`` or ``**kwargs``), in order."""
    parameters = inspect.signature(cls).parameters.values()
    return [p for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _identity(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
