"""Metric names that callbacks monitor, checked against what the model logs.

``ModelCheckpoint(monitor=...)`` and ``EarlyStopping(monitor=...)`` look their metric up in
``trainer.callback_metrics`` only at the end of the first validation: a misspelt name
(``val/acc_pdg``) fails after a whole epoch of training, with the run's folders written. The
model says what it logs (:meth:`RobustClassifier.monitorable_keys`, glob patterns such as
``train/*`` for the objective's parts, known only once it has run); a monitor that matches none
is refused before any work, with the closest names.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Sequence

from pytorch_lightning import Callback, LightningModule

from preflight.errors import ConfigError

ALWAYS_MONITORABLE = ("epoch", "step")  # Lightning adds both to every checkpoint's candidates


def check_monitors(callbacks: Sequence[tuple[str, Callback]], model: LightningModule) -> None:
    """Refuse a callback whose ``monitor`` names a metric the model never logs.

    Args:
        callbacks: ``(configuration path, callback)`` of the configured callbacks.
        model: the LightningModule; unless it has ``monitorable_keys()``, nothing is checked.

    Raises:
        ConfigError: naming ``<path>.init_args.monitor``, the metric, and the logged ones.
    """
    patterns = getattr(model, "monitorable_keys", None)
    if not callable(patterns):
        return
    logged = [*patterns(), *ALWAYS_MONITORABLE]
    for field, callback in callbacks:
        monitor = getattr(callback, "monitor", None)
        if not isinstance(monitor, str) or not monitor:
            continue
        if any(fnmatch.fnmatchcase(monitor, pattern) for pattern in logged):
            continue
        exact = [key for key in logged if "*" not in key]
        close = difflib.get_close_matches(monitor, exact, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"{field}.init_args.monitor",
            f"{type(callback).__name__} monitors {monitor!r}, which the model never logs; it logs "
            f"{', '.join(logged)}{hint}",
        )
