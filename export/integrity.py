"""Check an export bundle's files against what its ``bundle.json`` records.

At export, ``bundle.json`` records the size in bytes (``"bytes"``) and the SHA-256 digest
(``"sha256"``) of every other file of the bundle. Readers check both before they load anything,
so a truncated download, a flipped bit or weights swapped for other (valid) weights stop the
reader with the file named, instead of a traceback from the weights reader or, worse, a report
on another model. Bundles written before sizes were recorded are checked by digest alone.

Users who edit a bundle on purpose skip the check (``verify=False``; ``--no-verify`` on the
command line).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from export.checkpoint import CheckpointError


class BundleIntegrityError(CheckpointError):
    """A bundle file that is missing, or differs from what ``bundle.json`` records."""


def sha256(path: Path) -> str:
    """The SHA-256 digest of the file at ``path``, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_records(directory: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """``{"sha256": {name: digest}, "bytes": {name: size}}`` of the files ``names`` in ``directory``."""
    return {
        "sha256": {name: sha256(directory / name) for name in names},
        "bytes": {name: (directory / name).stat().st_size for name in names},
    }


def bundle_mismatches(directory: Path, metadata: dict[str, Any]) -> list[str]:
    """One line per file of the bundle that is missing or does not match ``bundle.json``."""
    digests = metadata.get("sha256")
    if not isinstance(digests, dict) or not digests:
        return [f"{directory / 'bundle.json'} records no SHA-256 digests"]
    sizes = metadata.get("bytes") if isinstance(metadata.get("bytes"), dict) else {}
    problems = []
    for name, digest in digests.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name} is missing")
            continue
        size = path.stat().st_size
        if name in sizes and size != sizes[name]:
            problems.append(f"{name} holds {size} bytes, bundle.json records {sizes[name]}")
        elif sha256(path) != digest:
            problems.append(f"{name} has SHA-256 {sha256(path)[:16]}..., bundle.json records {str(digest)[:16]}...")
    return problems


def verify_bundle(directory: str | Path, metadata: dict[str, Any]) -> None:
    """Raise a :class:`BundleIntegrityError` naming every file of the bundle in ``directory``
    that is missing or whose size or SHA-256 differs from ``metadata`` (its ``bundle.json``)."""
    directory = Path(directory)
    problems = bundle_mismatches(directory, metadata)
    if problems:
        raise BundleIntegrityError(
            f"bundle {directory} does not match its bundle.json (truncated, corrupted or replaced files): "
            + "; ".join(problems)
            + ". Export the checkpoint again, or skip this check (--no-verify; verify=False in Python) "
            "if you changed the bundle on purpose."
        )
