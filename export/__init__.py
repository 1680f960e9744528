"""Export checkpoints as bundles that load without this repository, and load them back.

Nothing here unpickles code: checkpoints are read with ``torch.load(weights_only=True)`` after
an integrity check, bundle weights are safetensors.
"""

from export.bundle import FILES, Bundle, export_bundle, load_bundle, read_bundle_metadata
from export.checkpoint import CheckpointError, LoadedClassifier, load_classifier, read_checkpoint

__all__ = [
    "FILES",
    "Bundle",
    "CheckpointError",
    "LoadedClassifier",
    "export_bundle",
    "load_bundle",
    "load_classifier",
    "read_bundle_metadata",
    "read_checkpoint",
]
