"""The command line, ``python train.py <subcommand>``: the top floor, which nothing else imports.

- :mod:`cli.lightning_cli`: ``fit``, ``validate`` and ``test`` (:class:`RobustLensCLI`, a
  LightningCLI over :class:`lightning_modules.RobustClassifier` and any datamodule), with the
  checks that stop a bad run before any work;
- :mod:`cli.export`: ``export``, a checkpoint to a bundle that loads with plain PyTorch;
- :mod:`cli.report`: ``report``, an analysis report of a checkpoint or bundle;
- :mod:`cli.errors`: how every subcommand turns a refused option into ``field: reason`` lines.
"""

import os

# jsonargparse's deprecation notices are about Lightning's calls into it, not about the recipe.
os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
