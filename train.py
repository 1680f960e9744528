"""robustlens command line: ``python train.py {fit,validate,test} --config configs/<recipe>.yaml``
(:mod:`cli.lightning_cli`), ``python train.py export --ckpt_path <checkpoint> --out_dir <folder>``
(:mod:`cli.export`) and ``python train.py report --ckpt_path <checkpoint> --out_dir <folder>``
(:mod:`cli.report`).

The subcommands live in :mod:`cli`; this file only hands the arguments to the right one.
"""

from __future__ import annotations

import sys

from callbacks import SaveConfigToRun
from cli import export as export_cli
from cli import report as report_cli
from cli.errors import RobustLensParser, exit_with_error
from cli.lightning_cli import RobustLensCLI
from datamodules import ImageDataModule
from export.staging import AtomicWriteError
from lightning_modules import DivergenceError, RobustClassifier

__all__ = ["RobustLensCLI", "main"]


def main(args: list[str] | None = None, run: bool = True) -> RobustLensCLI | None:
    """Build (and by default run) the command line; ``args`` replaces ``sys.argv[1:]``.

    ``export`` and ``report`` need no recipe, so they are handed to :func:`cli.export.main` and
    :func:`cli.report.main` before LightningCLI is built. After a run, an open W&B run is
    finished so that its files are complete on disk (the command is over; an offline run can
    then be synced with ``wandb sync``).
    """
    argv = sys.argv[1:] if args is None else args
    if argv[:1] == ["export"]:
        export_cli.main(argv[1:])
        return None
    if argv[:1] == ["report"]:
        report_cli.main(argv[1:])
        return None
    try:
        cli = RobustLensCLI(
            RobustClassifier,
            ImageDataModule,
            subclass_mode_data=True,
            save_config_callback=SaveConfigToRun,
            parser_class=RobustLensParser,
            args=args,
            run=run,
        )
    except (DivergenceError, AtomicWriteError) as error:  # AtomicWriteError: a checkpoint that could not be written
        _finish_wandb()
        exit_with_error(str(error), 1, cause=error)
    if run:
        _finish_wandb()
    return cli


def _finish_wandb() -> None:
    import wandb

    if wandb.run is not None:
        wandb.finish()


if __name__ == "__main__":
    main()
    sys.exit(0)
