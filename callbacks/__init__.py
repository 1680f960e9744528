"""Lightning callbacks: observe training, record it, never steer it."""

from callbacks.checkpoint_metadata import CHECKPOINT_KEY, run_metadata
from callbacks.checkpoint import ModelCheckpoint
from callbacks.config_saver import SaveConfigToRun, run_directory
from callbacks.export_bundle import ExportBundle
from callbacks.preemption import PreemptionCheckpoint

__all__ = [
    "CHECKPOINT_KEY",
    "ExportBundle",
    "ModelCheckpoint",
    "PreemptionCheckpoint",
    "SaveConfigToRun",
    "run_directory",
    "run_metadata",
]
