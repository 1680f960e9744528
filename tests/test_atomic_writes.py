"""Files and folders are replaced all at once: a failed write (a full disk) or a killed process
leaves the previous version whole, and no half-written one where a reader would look."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from export import staging
from export.staging import AtomicWriteError, staged_folder, write_file_atomically

STAGING_PY = Path(staging.__file__)


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _full_disk_after(n_bytes: int):
    """A ``write(handle)`` that writes ``n_bytes`` and then fails as a full disk does."""

    def write(handle) -> None:
        handle.write(b"x" * n_bytes)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return write


def test_a_full_disk_during_a_file_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"old checkpoint")
    with pytest.raises(AtomicWriteError, match=r"could not write checkpoint .*last\.ckpt: No space left on device .*is unchanged"):
        write_file_atomically(target, _full_disk_after(1000), what="checkpoint")
    assert target.read_bytes() == b"old checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # the temporary file is gone
    with pytest.raises(AtomicWriteError, match="was not created"):
        write_file_atomically(tmp_path / "new.ckpt", _full_disk_after(10), what="checkpoint")
    assert not (tmp_path / "new.ckpt").exists()


def test_a_write_replaces_the_file_whole_and_clears_leftovers_of_killed_writes(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"old")
    (tmp_path / ".last.ckpt.partial-abc").write_bytes(b"half of a killed write")
    (tmp_path / ".other.ckpt.partial-abc").write_bytes(b"another file's")
    write_file_atomically(target, lambda handle: handle.write(b"new contents"))
    assert target.read_bytes() == b"new contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.ckpt.partial-abc", "last.ckpt"]
    mode = target.stat().st_mode & 0o777
    assert mode == 0o666 & ~_umask()  # as a plain open() would create it, not mkstemp's 0600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("atomic_swap", [True, False], ids=["renameat2-exchange", "rename-aside"])
def test_a_folder_is_swapped_whole_and_a_failed_one_leaves_the_old(tmp_path: Path, monkeypatch, atomic_swap: bool) -> None:
    if not atomic_swap:
        monkeypatch.setattr(staging, "_exchange", lambda a, b: False)
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"old weights")
    (out / "bundle.json").write_text("{}")
    before = _digests(out)
    with pytest.raises(AtomicWriteError, match=r"could not write export bundle .*bundle: No space left on device"):
        with staged_folder(out, what="export bundle") as folder:
            (folder / "model.safetensors").write_bytes(b"new weights")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert _digests(out) == before and [p.name for p in tmp_path.iterdir()] == ["bundle"]
    with staged_folder(out) as folder:
        (folder / "model.safetensors").write_bytes(b"new weights")
    assert _digests(out) == {"model.safetensors": hashlib.sha256(b"new weights").hexdigest()}
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # the old folder is removed, not left aside


KILLED_WRITER = textwrap.dedent(
    """
    import importlib.util, os, signal, sys
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("staging", sys.argv[1])  # no torch import: seconds saved
    staging = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(staging)
    out, point = Path(sys.argv[2]), sys.argv[3]
    kill = lambda: os.kill(os.getpid(), signal.SIGKILL)
    if point == "file":
        def write(handle):
            handle.write(b"n" * 5000)
            handle.flush()
            kill()
        staging.write_file_atomically(out / "file.bin", write)
    else:
        exchange = staging._exchange
        def exchange_then_die(a, b):
            done = exchange(a, b)
            kill()
        if point == "after-swap":
            staging._exchange = exchange_then_die
        with staging.staged_folder(out / "folder") as folder:
            (folder / "a.txt").write_text("new a")
            if point == "mid-folder":
                kill()
            (folder / "b.txt").write_text("new b")
    """
)


@pytest.mark.parametrize("point", ["file", "mid-folder", "after-swap"])
def test_a_process_killed_mid_write_leaves_the_old_version_or_the_new_one_whole(tmp_path: Path, point: str) -> None:
    (tmp_path / "file.bin").write_bytes(b"old file")
    (tmp_path / "folder").mkdir()
    for name in ("a.txt", "b.txt"):
        (tmp_path / "folder" / name).write_text(f"old {name[0]}")
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER)
    done = subprocess.run([sys.executable, str(script), str(STAGING_PY), str(tmp_path), point], capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    assert (tmp_path / "file.bin").read_bytes() == b"old file"
    contents = {p.name: p.read_text() for p in (tmp_path / "folder").iterdir()}
    expected = {"a.txt": "new a", "b.txt": "new b"} if point == "after-swap" else {"a.txt": "old a", "b.txt": "old b"}
    assert contents == expected
    # The next write of the same destination clears what the killed one left behind.
    write_file_atomically(tmp_path / "file.bin", lambda handle: handle.write(b"later"))
    with staged_folder(tmp_path / "folder") as folder:
        (folder / "a.txt").write_text("later")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin", "folder", "writer.py"]
