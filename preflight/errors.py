"""The one error every pre-run check raises: which configuration field is wrong, and why."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value that would fail (or silently misbehave) once the run has started.

    Attributes:
        field: the dotted configuration path (``model.optimizer.init_args.lr``), or "" when the
            problem is not one field's.
        reason: what is wrong and what is accepted.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason
