"""Attribution methods by name, for recipes, callbacks and notebooks.

``build_attribution("integrated_gradients", steps=100)`` builds the object. The names are those
the method classes register in their class statements (:mod:`attributions.base`), read live by
:func:`attribution_names`; the import path of a registered class (``attributions.Saliency``,
``my_project.methods.CentreMass``) is accepted wherever a name is. "smoothgrad",
"smoothgrad_abs", "smoothgrad_sq", "vargrad" and "vargrad_abs" wrap another method given by
``base`` (:class:`attributions.SmoothGrad`).
"""

from __future__ import annotations

from typing import Any

from attributions.base import DEFAULT_LISTS, AttributionMethod


def attribution_names(default_in: str | None = None) -> tuple[str, ...]:
    """The registered method names, in registration order.

    Args:
        default_in: None for every name, or one of :data:`attributions.base.DEFAULT_LISTS`
            ("report", "callbacks") for the names of that default list.
    """
    names = AttributionMethod.registry.names()
    if default_in is None:
        return names
    if default_in not in DEFAULT_LISTS:
        raise ValueError(f"default_in must be None or one of {DEFAULT_LISTS}, got {default_in!r}")
    return tuple(n for n in names if default_in in AttributionMethod.default_lists.get(n, ()))


def attribution_name(name: str) -> str:
    """The registered name ``name`` stands for: itself, or the name of the class at an import path.

    Raises:
        ValueError: naming the registered names when ``name`` is neither.
    """
    return AttributionMethod.registry.name_of(name)


def attribution_options(name: str) -> tuple[str, ...]:
    """The keyword arguments ``build_attribution(name, ...)`` accepts."""
    return AttributionMethod.registry.entry(name).options()


def check_attribution_name(name: str) -> None:
    """Raise a ValueError naming the allowed values when ``name`` is no known method."""
    AttributionMethod.registry.check(name)


def build_attribution(name: str, **kwargs: Any) -> AttributionMethod:
    """The attribution method called ``name`` (or at that import path), configured by ``kwargs``.

    Raises:
        ValueError: for an unknown name or option (naming the allowed ones), or a bad value.
    """
    return AttributionMethod.registry.build(name, **kwargs)
