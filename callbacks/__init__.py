"""Lightning callbacks: observe training, record it, never steer it."""

from callbacks.checkpoint_metadata import CHECKPOINT_KEY, run_metadata
from callbacks.config_saver import SaveConfigToRun, run_directory
from callbacks.export_bundle import ExportBundle

__all__ = ["CHECKPOINT_KEY", "ExportBundle", "SaveConfigToRun", "run_directory", "run_metadata"]
