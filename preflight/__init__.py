"""Checks before a run starts: every argument that PyTorch, Lightning or W&B would check only
once the run is under way (or never), checked before any W&B run, run folder or checkpoint is
written, and reported against its configuration field.

- :mod:`preflight.optimization`: the optimiser and scheduler, built and stepped for the run's
  length on a throwaway parameter, whatever classes the recipe names.
- :mod:`preflight.trainer`: Trainer arguments Lightning leaves to the run; the run's length.
- :mod:`preflight.monitors`: metrics that callbacks monitor, against what the model logs.
- :mod:`preflight.loggers`, :mod:`preflight.paths`: logger names and output folders.
- :mod:`preflight.resume`: a resumed fit continues its own run with its own recipe.
- :mod:`preflight.run`: all of the above for one subcommand.
"""

from preflight.errors import ConfigError
from preflight.resume import (
    continue_loggers,
    describe_differences,
    keep_csv_history,
    recipe_differences,
    recorded_loggers,
)
from preflight.run import check_run
from preflight.trainer import refused_trainer_argument

__all__ = [
    "ConfigError",
    "check_run",
    "continue_loggers",
    "keep_csv_history",
    "describe_differences",
    "recipe_differences",
    "recorded_loggers",
    "refused_trainer_argument",
]
