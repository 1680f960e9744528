"""``python train.py {fit,validate,test} --config configs/<recipe>.yaml``: :class:`RobustLensCLI`.

A LightningCLI over :class:`lightning_modules.RobustClassifier` and any
:class:`datamodules.ImageDataModule`. The model is sized from the datamodule (classes, input
shape, normalisation). Every field can be overridden on the command line
(``--model.eval_attack.init_args.eps=0.2``); unknown keys, wrong types and out-of-range values
stop the run before any work, with the field named (:mod:`cli.errors`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pytorch_lightning import Trainer
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import MisconfigurationException

import preflight
from callbacks import CHECKPOINT_KEY, ProbeCallback, RobustnessEvaluator
from callbacks.checkpoint_io import AtomicCheckpointIO
from cli.errors import failing_field, root_cause
from export.checkpoint import CheckpointError, check_weights_fit, read_checkpoint
from lightning_modules import LINKED_ARGUMENTS

LINKED_FROM_DATA = ("num_classes", "input_shape", "mean", "std")
LIGHTNING_CKPT_ALIASES = ("last", "best", "hpc", "registry")
MAX_SEED = 2**32 - 1  # what seed_everything (NumPy) accepts


class RobustLensCLI(LightningCLI):
    """LightningCLI with the datamodule→model links, clear errors, and a closing summary."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for name in LINKED_FROM_DATA:
            parser.link_arguments(f"data.{name}", f"model.{name}", apply_on="instantiate")

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except (ValueError, TypeError, FileNotFoundError) as error:
            cause = root_cause(error)
            dumped = yaml.safe_load(self.parser.dump(self.config, format="yaml"))
            dumped = dumped.get(self.subcommand, dumped) if self.subcommand else dumped
            field = failing_field(cause, dumped, self.model_class)
            where = f"{field}: " if field else ""
            self._parser(self.subcommand).error(f"invalid configuration: {where}{cause}")
        self._record_backbone_arguments()

    def _record_backbone_arguments(self) -> None:
        """Write the data's values into a class backbone's ``init_args`` in the recorded config.

        The parser fills ``init_args`` with the class's defaults (``in_channels: 3``), while the
        backbone is built with the arguments linked from the data (``in_channels: 1``); the
        config saved with the run and in its checkpoints states the latter.
        """
        built = getattr(self.model, "hparams", {}).get("backbone")
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        recorded = config.get("model.backbone")
        if not isinstance(built, dict) or recorded is None or not hasattr(recorded, "init_args"):
            return
        for name in LINKED_ARGUMENTS:
            # Only those the parser holds: a required argument (num_classes) is left to the call.
            if name in built["init_args"] and name in recorded.init_args:
                recorded.init_args[name] = built["init_args"][name]

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        # LightningCLI reads the hyper-parameters of ``ckpt_path`` right after parsing (they
        # take precedence over the config's model); check the file first, so that a truncated
        # or foreign file is reported by name instead of failing deep inside torch.
        self._checkpoint: dict[str, Any] | None = None
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        seed = self.config[subcommand].get("seed_everything")
        if not isinstance(seed, bool) and isinstance(seed, int) and not 0 <= seed <= MAX_SEED:
            self._parser(subcommand).error(
                f"invalid configuration: seed_everything: must be an int in [0, {MAX_SEED}], true (a random seed) "
                f"or false (no seeding), got {seed}"
            )
        ckpt_path = self.config[subcommand].get("ckpt_path")
        if ckpt_path and ckpt_path not in LIGHTNING_CKPT_ALIASES and Path(ckpt_path).exists():
            try:
                self._checkpoint = read_checkpoint(ckpt_path)
            except (CheckpointError, OSError) as error:
                self._parser(subcommand).error(f"invalid input: ckpt_path: {error}")
            if subcommand == "fit":
                self._check_same_recipe(subcommand, ckpt_path)

    def _check_same_recipe(self, subcommand: str, ckpt_path: str) -> None:
        """Refuse to resume a fit from a checkpoint trained with another recipe (before
        LightningCLI replaces the recipe's model by the checkpoint's own)."""
        metadata = (self._checkpoint or {}).get(CHECKPOINT_KEY)
        recorded_text = metadata.get("config") if isinstance(metadata, dict) else None
        if not recorded_text:
            return  # saved outside train.py: no recipe to compare with
        recorded = yaml.safe_load(recorded_text) or {}
        current = self._dumped_config(subcommand)
        if isinstance(current.get("seed_everything"), bool):
            current.pop("seed_everything")  # a random seed: nothing to compare
        differences = preflight.recipe_differences(recorded, current)
        if differences:
            self._parser(subcommand).error(f"invalid input: ckpt_path: {preflight.describe_differences(ckpt_path, differences)}")

    def _dumped_config(self, subcommand: str) -> dict[str, Any]:
        """The subcommand's configuration as plain data (what ``config.yaml`` records)."""
        return yaml.safe_load(self._parser(subcommand).dump(self.config[subcommand], format="yaml")) or {}

    def before_instantiate_classes(self) -> None:
        """A resumed fit logs to the run its checkpoint came from (the same W&B run, the same
        run folder), unless the recipe names a run itself."""
        if self.subcommand != "fit" or self._checkpoint is None:
            return
        recorded = preflight.recorded_loggers(self._checkpoint.get(CHECKPOINT_KEY))
        for line in preflight.continue_loggers(self.config[self.subcommand]["trainer"], recorded):
            print(f"robustlens: resuming the run of the checkpoint: {line}", flush=True)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Build the trainer; an argument Lightning refuses is reported against its field."""
        try:
            return super().instantiate_trainer(**kwargs)
        except (MisconfigurationException, ValueError, TypeError, ImportError) as error:
            config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
            name = preflight.refused_trainer_argument(error, config)
            where = f"trainer.{name}: " if name else "trainer: "
            self._parser(self.subcommand).error(f"invalid configuration: {where}{error}")

    def after_instantiate_classes(self) -> None:
        """Checkpoints are written atomically (:class:`callbacks.checkpoint_io.AtomicCheckpointIO`)
        unless the strategy was given another CheckpointIO."""
        strategy = self.trainer.strategy
        if type(strategy.checkpoint_io) is TorchCheckpointIO:
            strategy.checkpoint_io = AtomicCheckpointIO()

    def before_fit(self) -> None:
        self._check_inputs("fit")
        if self._checkpoint is not None:
            step = int(self._checkpoint.get("global_step", 0))
            for line in preflight.keep_csv_history(self.trainer.loggers, step):
                print(f"robustlens: resuming the run of the checkpoint: {line}", flush=True)

    def before_validate(self) -> None:
        self._check_inputs("validate")

    def before_test(self) -> None:
        self._check_inputs("test")

    def _check_inputs(self, stage: str) -> None:
        """Read the checkpoint and the data before the trainer starts, so that a bad file stops
        the run with its name before any run folder, W&B run or checkpoint is written.

        The checkpoint must be intact, hold no code, and fit the model tensor for tensor (what
        Lightning would load). The model is built from the checkpoint's hyper-parameters
        (LightningCLI's rule) and sized by the datamodule, so a mismatch means data of another
        shape or class count than the checkpoint was trained on. The datamodule is set up now (its splits are
        cached, so Lightning's own ``setup`` later costs nothing) unless it still has to
        download its files, which Lightning does on rank zero in ``prepare_data``.
        """
        parser = self._parser(self.subcommand)
        ckpt_path = self.config[self.subcommand].get("ckpt_path")
        if ckpt_path and ckpt_path not in LIGHTNING_CKPT_ALIASES:
            try:
                checkpoint = self._checkpoint if self._checkpoint is not None else read_checkpoint(ckpt_path)
                check_weights_fit(self.model, checkpoint["state_dict"], ckpt_path)
            except (CheckpointError, OSError) as error:
                parser.error(f"invalid input: ckpt_path: {error}")
        data_ready = not getattr(self.datamodule, "download", False)
        if data_ready:
            try:
                self.datamodule.setup(stage)
            except (ValueError, OSError) as error:
                parser.error(f"invalid input: data: {error}")
            if stage == "fit":
                self._check_probe_callbacks(parser)
        try:
            preflight.check_run(
                stage, self.config[self.subcommand].as_dict(), self.trainer, self.model, self.datamodule,
                self._configured_callbacks(), data_ready,
            )  # fmt: skip
        except preflight.ConfigError as error:
            parser.error(f"invalid configuration: {error}")

    def _configured_callbacks(self) -> list[tuple[str, Any]]:
        """``(trainer.callbacks[i], callback)`` of the recipe's callbacks, in its order."""
        callbacks = self._get(self.config_init, "trainer", default={}).get("callbacks")
        if callbacks is None:
            return []
        if not isinstance(callbacks, list):
            return [("trainer.callbacks", callbacks)]
        return [(f"trainer.callbacks[{i}]", callback) for i, callback in enumerate(callbacks)]

    def _check_probe_callbacks(self, parser: Any) -> None:
        """Draw the monitoring callbacks' probe sets now: a probe set larger than the validation
        split, or a mask metric on data without masks, stops the run here with the option named."""
        for callback in self.trainer.callbacks:
            if isinstance(callback, ProbeCallback):
                try:
                    callback.draw_probe(self.datamodule, self.trainer.world_size)
                except ValueError as error:
                    parser.error(f"invalid input: trainer.callbacks: {type(callback).__name__}: {error}")

    def after_fit(self) -> None:
        trainer = self.trainer
        if not trainer.is_global_zero:
            return
        lines = ["", "robustlens: fit finished"]
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                lines.append(f"  W&B run directory: {Path(logger.experiment.dir).parent}")
        if trainer.checkpoint_callback is not None:
            callback = trainer.checkpoint_callback
            lines.append(f"  best checkpoint:   {getattr(callback, 'best_model_path', '') or '(none)'}")
            lines.append(f"  last checkpoint:   {getattr(callback, 'last_model_path', '') or '(none)'}")
        for evaluator in trainer.callbacks:  # the end-of-fit robust accuracy of the last weights
            if isinstance(evaluator, RobustnessEvaluator) and evaluator.at_fit_end and evaluator.summary():
                lines.append(f"  robust accuracy of the last weights: {evaluator.summary()}")
        print("\n".join(lines), flush=True)
