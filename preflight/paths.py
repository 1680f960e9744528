"""Output folders checked before the run writes into them.

A checkpoint folder inside a file, or on a read-only disk, fails at the first save, after an
epoch of work. :func:`check_output_folder` checks that the folder exists as a folder or can be
created, and that the process may write there.
"""

from __future__ import annotations

import os
from pathlib import Path

from preflight.errors import ConfigError


def check_output_folder(path: str | os.PathLike[str] | None, field: str) -> None:
    """Raise a ConfigError naming ``field`` unless ``path`` is (or can become) a writable folder.

    Remote paths (``s3://...``) are not checked.
    """
    if path is None or "://" in str(path):
        return
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(field, f"must be a folder, got {str(folder)!r}, which is a file")
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(field, f"must be a folder that can be created, but {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(field, f"must be a writable folder, but {str(existing)!r} is not writable")
