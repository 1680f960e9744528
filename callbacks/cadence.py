"""When a periodic callback runs: every N epochs or every N optimiser steps, never both."""

from __future__ import annotations

from dataclasses import dataclass


def _check_period(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1 or None, got {value!r}")


@dataclass(frozen=True)
class Cadence:
    """Every ``every_n_epochs`` training epochs, or every ``every_n_steps`` optimiser steps.

    Build it with :meth:`from_options`, which validates the two options and fills the default
    (every epoch) when both are None.
    """

    every_n_epochs: int | None
    every_n_steps: int | None

    @classmethod
    def from_options(cls, every_n_epochs: int | None, every_n_steps: int | None) -> Cadence:
        """Validate the options (exactly one of them, or neither for every epoch).

        Raises:
            ValueError: a period that is not an integer >= 1, or both periods set.
        """
        _check_period("every_n_epochs", every_n_epochs)
        _check_period("every_n_steps", every_n_steps)
        if every_n_epochs is not None and every_n_steps is not None:
            raise ValueError(
                f"every_n_epochs must be None when every_n_steps is set (choose one cadence), "
                f"got every_n_epochs={every_n_epochs} and every_n_steps={every_n_steps}"
            )
        if every_n_epochs is None and every_n_steps is None:
            every_n_epochs = 1
        return cls(every_n_epochs, every_n_steps)

    def due_after_epoch(self, epoch: int) -> bool:
        """Whether to run at the end of training epoch ``epoch`` (counted from 0)."""
        return self.every_n_epochs is not None and (epoch + 1) % self.every_n_epochs == 0

    def due_after_step(self, global_step: int) -> bool:
        """Whether to run once the optimiser has taken ``global_step`` steps."""
        return self.every_n_steps is not None and global_step > 0 and global_step % self.every_n_steps == 0

    def __str__(self) -> str:
        if self.every_n_steps is not None:
            return f"every {self.every_n_steps} steps"
        return f"every {self.every_n_epochs} epochs"
