"""Lightning callbacks: observe training, record it, never steer it."""

from callbacks.checkpoint_metadata import CHECKPOINT_KEY, run_metadata
from callbacks.checkpoint import ModelCheckpoint
from callbacks.config_saver import SaveConfigToRun, run_directory
from callbacks.explanation_monitor import ExplanationMonitor, ExplanationScores
from callbacks.export_bundle import ExportBundle
from callbacks.observe import observing
from callbacks.preemption import PreemptionCheckpoint
from callbacks.probe import PeriodicProbeCallback, ProbeCallback, gather_rows, share_bounds
from callbacks.robustness_evaluator import RobustnessEvaluator
from callbacks.sanity_check import SanityCheck, SanityResult
from callbacks.tcav_monitor import TCAVMonitor
from callbacks.weight_average import WeightAverage

__all__ = [
    "CHECKPOINT_KEY",
    "ExplanationMonitor",
    "ExplanationScores",
    "ExportBundle",
    "ModelCheckpoint",
    "PeriodicProbeCallback",
    "PreemptionCheckpoint",
    "ProbeCallback",
    "RobustnessEvaluator",
    "SanityCheck",
    "SanityResult",
    "TCAVMonitor",
    "WeightAverage",
    "SaveConfigToRun",
    "gather_rows",
    "observing",
    "run_directory",
    "run_metadata",
    "share_bounds",
]
