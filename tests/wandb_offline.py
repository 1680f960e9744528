"""Read back what a W&B offline run logged, from its run directory, without the network.

A run's ``run-<id>.wandb`` file is a LevelDB-style log of protobuf ``Record`` messages:
a 7-byte header (":W&B", magic 0xBEE1, version), then 32 KiB blocks of chunks, each with a
7-byte header (CRC32C, little-endian length, type: 1 full, 2 first, 3 middle, 4 last).
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

_BLOCK = 32 * 1024
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    records: list[bytes] = []
    pos = _HEADER
    pending = b""
    while pos + _HEADER <= len(data):
        space = _BLOCK - pos % _BLOCK
        if space < _HEADER:  # block trailer padding
            pos += space
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if kind == 0 and length == 0:
            break
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind == _FULL:
            records.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            records.append(pending + chunk)
            pending = b""
    return records


def _key(item: Any) -> str:
    return item.key if item.key else "/".join(item.nested_key)


@dataclass
class OfflineRun:
    """History rows, final summary and config of an offline run."""

    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def column(self, key: str) -> list[Any]:
        return [row[key] for row in self.history if key in row]


def _parsed(path: Path) -> list[Any]:
    records = []
    for raw in _records(path):
        record = pb.Record()
        record.ParseFromString(raw)
        records.append(record)
    return records


def read_run(run_dir: str | Path, timeout: float = 60.0) -> OfflineRun:
    """Parse the ``.wandb`` file in ``run_dir`` (``.../wandb/offline-run-*``).

    The W&B service writes the file in the background, also after ``wandb.finish()`` returns
    on a busy machine: wait (up to ``timeout`` seconds) until the run's exit record is there.
    """
    run_dir = Path(run_dir)
    files = list(run_dir.glob("run-*.wandb"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one run-*.wandb file in {run_dir}, found {files}")
    deadline = time.monotonic() + timeout
    records = _parsed(files[0])
    while not any(r.WhichOneof("record_type") == "exit" for r in records) and time.monotonic() < deadline:
        time.sleep(0.5)
        records = _parsed(files[0])
    run = OfflineRun()
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "history":
            run.history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                run.summary[_key(item)] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                run.config[_key(item)] = json.loads(item.value_json)
    return run


def find_run_dirs(root: str | Path) -> list[Path]:
    """Every offline run directory under ``root``."""
    return sorted(Path(root).rglob("offline-run-*"))
