"""Lightning callbacks: observe training, record it, never steer it."""

from callbacks.config_saver import SaveConfigToRun, run_directory

__all__ = ["SaveConfigToRun", "run_directory"]
