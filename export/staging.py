"""Write files and folders all at once: a reader sees the old version or the new one, never half.

Every output robustlens writes that a later command reads back — checkpoints, export bundles,
analysis reports — goes through these two functions:

- :func:`write_file_atomically` writes into a hidden temporary file beside the destination,
  flushes it to the disk (``fsync``), renames it over the destination (one ``rename`` on the
  same file system: atomic on POSIX), then syncs the folder so that the rename itself survives
  a power cut.
- :func:`staged_folder` does the same for a folder: the files are written into a hidden sibling
  folder, synced, and the two folders are swapped in one step (Linux ``renameat2`` with
  ``RENAME_EXCHANGE``; elsewhere the old folder is first renamed aside, so it is never deleted
  before the new one is in place).

A process killed at any point (SIGKILL, out of memory, a pre-empted node) leaves the previous
file or folder whole; at most a hidden ``.<name>.partial-*`` leftover remains, which the next
write of the same destination removes. A failed write (a full disk: ``ENOSPC``) removes its
temporary file and raises :class:`AtomicWriteError`, whose message names the destination and
says that it is unchanged.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

PARTIAL = ".partial-"


class AtomicWriteError(OSError):
    """A write that failed before its destination was replaced; the destination is unchanged.

    ``errno`` is the failure's (``ENOSPC`` for a full disk); the message names the destination.
    """

    def __str__(self) -> str:
        return str(self.strerror)


def partial_prefix(destination: Path) -> str:
    """The name prefix of the temporary siblings of ``destination``."""
    return f".{destination.name}{PARTIAL}"


def fsync_directory(directory: Path) -> None:
    """Flush ``directory``'s entries (new names, renames) to the disk; a no-op where folders
    cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems (network mounts) refuse fsync on folders
        pass
    finally:
        os.close(fd)


def remove_leftovers(destination: Path) -> None:
    """Remove the temporary siblings an interrupted write of ``destination`` left behind."""
    prefix = partial_prefix(destination)
    try:
        entries = list(destination.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(prefix):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _failure(destination: Path, error: OSError, what: str) -> AtomicWriteError:
    reason = os.strerror(error.errno) if error.errno else str(error)
    hint = " (the disk is full: free some space and run the command again)" if error.errno == errno.ENOSPC else ""
    kept = "is unchanged" if destination.exists() else "was not created"
    return AtomicWriteError(
        error.errno or errno.EIO, f"could not write {what} {destination}: {reason}{hint}; {destination} {kept}"
    )


def write_file_atomically(destination: str | Path, write: Callable[[BinaryIO], object], what: str = "file") -> None:
    """Write ``destination`` through ``write(file)`` so that it is replaced all at once.

    Args:
        destination: the file to create or replace.
        write: writes the contents into the open binary file it is given.
        what: what the file is, for the error message ("checkpoint").

    Raises:
        AtomicWriteError: when writing, syncing or renaming fails (a full disk, a read-only
            folder); the temporary file is removed and ``destination`` is left as it was.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(destination)
    fd, name = tempfile.mkstemp(prefix=partial_prefix(destination), dir=destination.parent)
    temporary = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, destination)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise _failure(destination, error, what) from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(destination.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` (and ``root`` itself) to the disk."""
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            if os.path.islink(path):
                continue
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        fsync_directory(Path(directory))


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names ``a`` and ``b`` in one step (Linux ``renameat2``); False where the system
    or the file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _replace_folder(staging: Path, out_dir: Path) -> None:
    """Put ``staging`` in the place of ``out_dir``; the old ``out_dir``, if any, ends up in
    ``staging``'s place, to be removed."""
    if not out_dir.exists() and not out_dir.is_symlink():
        staging.rename(out_dir)
        return
    if _exchange(staging, out_dir):
        return
    # No atomic swap: the old folder (or file) stays whole under a hidden name until the new one
    # is in place, and comes back if the new one cannot be moved there.
    aside = Path(tempfile.mkdtemp(prefix=partial_prefix(out_dir), dir=out_dir.parent))
    aside.rmdir()
    out_dir.rename(aside)
    try:
        staging.rename(out_dir)
    except OSError:
        aside.rename(out_dir)
        raise
    aside.rename(staging)


@contextmanager
def staged_folder(out_dir: Path, what: str = "folder") -> Iterator[Path]:
    """Yield a hidden sibling of ``out_dir`` to write into.

    When the block ends normally, the sibling's files are synced to the disk and the sibling
    replaces ``out_dir`` (an existing folder or file of that name) in one step; when the block
    raises, the sibling is removed and ``out_dir`` is left as it was. Export bundles and
    analysis reports are written this way, so a failed or killed run leaves no partial output.

    Raises:
        AtomicWriteError: when the block or the swap fails with an OSError (a full disk);
            ``out_dir`` is unchanged.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=partial_prefix(out_dir), dir=out_dir.parent))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; the result should not be
    try:
        try:
            yield staging
            fsync_tree(staging)
            _replace_folder(staging, out_dir)
        except AtomicWriteError:
            raise
        except OSError as error:
            raise _failure(out_dir, error, what) from error
        fsync_directory(out_dir.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
