"""Find a dataset's files on disk, and fetch them only when asked to.

Datamodules look for their files in ``__init__``, so that a run with a wrong ``data_dir`` stops
before any model is built, with every missing file named; nothing is written while looking.
With ``download`` on, :func:`download_with_cleanup` runs torchvision's download (in
``prepare_data``) and, when it fails (no network, a checksum that does not match), removes
whatever it had begun to write before saying which files were expected where.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

ExpectedFile = tuple[str, ...]
"""One expected file as its accepted alternatives, relative to ``data_dir`` (a file and its
``.gz`` archive, say); the first is the name shown in messages."""


def find_file(root: Path, alternatives: ExpectedFile) -> Path | None:
    """The first of ``alternatives`` that exists under ``root``, or None."""
    for name in alternatives:
        path = root / name
        if path.is_file():
            return path
    return None


def missing_files(root: Path, expected: Sequence[ExpectedFile]) -> list[ExpectedFile]:
    """The entries of ``expected`` of which no alternative exists under ``root``."""
    return [alternatives for alternatives in expected if find_file(root, alternatives) is None]


def describe_missing(root: Path, missing: Sequence[ExpectedFile]) -> str:
    """One indented line per missing file: its path, and the other names it may have."""
    lines = []
    for alternatives in missing:
        line = f"  {root / alternatives[0]}"
        if len(alternatives) > 1:
            line += " (or " + ", ".join(Path(name).name for name in alternatives[1:]) + ")"
        lines.append(line)
    return "\n".join(lines)


def require_files(dataset: str, root: Path, expected: Sequence[ExpectedFile], hint: str) -> None:
    """Raise a FileNotFoundError naming every expected file that is absent from ``root``.

    The message starts with ``data_dir`` so that ``train.py`` reports it against that field.

    Args:
        dataset: the dataset's name, for the message.
        root: the ``data_dir`` the files should be under.
        expected: the files, relative to ``root``.
        hint: the last line of the message: what to do about it.
    """
    missing = missing_files(root, expected)
    if not missing:
        return
    raise FileNotFoundError(
        f"data_dir {str(root)!r} does not hold the {dataset} files; missing:\n{describe_missing(root, missing)}"
        + (f"\n{hint}" if hint else "")
    )


def download_with_cleanup(
    dataset: str,
    root: Path,
    expected: Sequence[ExpectedFile],
    written: Sequence[str],
    fetch: Callable[[], object],
    source: str,
) -> None:
    """Run ``fetch`` (a torchvision download into ``root``) and check that it delivered.

    When ``fetch`` fails, every path of ``written`` (relative to ``root``, the files and folders
    the download creates) that did not exist before is removed, and so is ``root`` itself if
    the download created it; then a RuntimeError names the expected files.

    Args:
        dataset: the dataset's name, for the message.
        root: the ``data_dir`` to download into.
        expected: the files that must exist afterwards, relative to ``root``.
        written: top-level files and folders, relative to ``root``, the download may create.
        fetch: the download itself.
        source: where the files come from (a URL), for the message.
    """
    fresh = [root / name for name in written if not (root / name).exists()]
    root_is_fresh = not root.exists()
    try:
        fetch()
    except (OSError, RuntimeError, ValueError) as error:  # urllib errors are OSErrors
        for path in fresh:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink()
        if root_is_fresh and root.exists():
            shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(
            f"could not download {dataset} from {source} into {str(root)!r}: {error}\n"
            f"Expected files:\n{describe_missing(root, expected)}\n"
            "Put them there by hand (and keep download: false), or retry when the network is reachable."
        ) from error
    missing = missing_files(root, expected)
    if missing:
        raise RuntimeError(
            f"the {dataset} download into {str(root)!r} finished without these files:\n"
            + describe_missing(root, missing)
        )
