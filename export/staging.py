"""Write a folder of files all at once: readers see the old folder or the new one, never half of it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_folder(out_dir: Path) -> Iterator[Path]:
    """Yield a hidden sibling of ``out_dir`` to write into.

    When the block ends normally the sibling replaces ``out_dir`` (an existing folder or file of
    that name is removed first) by one rename on the same file system; when it raises, the
    sibling is removed and ``out_dir`` is left as it was. Export bundles and analysis reports are
    written this way so a failed run leaves no partial output behind.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        yield staging
        if out_dir.is_dir():
            shutil.rmtree(out_dir)
        elif out_dir.exists():
            out_dir.unlink()
        staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
