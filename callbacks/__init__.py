"""Lightning callbacks: observe training, record it, never steer it."""

from callbacks.config_saver import SaveConfigToRun, run_directory
from callbacks.preemption import PreemptionCheckpoint

__all__ = ["PreemptionCheckpoint", "SaveConfigToRun", "run_directory"]
