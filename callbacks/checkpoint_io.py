"""Checkpoints written all at once: a reader sees the previous checkpoint or the new one, never half.

Lightning saves every checkpoint (``ModelCheckpoint``, ``PreemptionCheckpoint``,
``trainer.save_checkpoint``) through the strategy's ``CheckpointIO``. Lightning's own
``TorchCheckpointIO`` writes a local file through an fsspec transaction: the bytes go to a
temporary file in the system's temporary folder, which is then *moved* onto the destination.
When that folder is on another file system than the checkpoints (a node-local ``/tmp`` and a
shared checkpoint disk, the usual cluster layout) the move is a copy, and a job killed during
the copy leaves a truncated ``last.ckpt`` that the next resume fails on; nothing is synced to
the disk either. :class:`AtomicCheckpointIO` writes the temporary file beside the destination,
syncs it, and renames it into place (:func:`export.staging.write_file_atomically`): a process
killed at any point leaves the previous checkpoint whole, and a full disk ends the run with an
:class:`~export.staging.AtomicWriteError` that names the checkpoint and says it is unchanged.

``train.py`` installs it on every trainer whose strategy uses the default ``TorchCheckpointIO``;
in Python, pass ``Trainer(plugins=[AtomicCheckpointIO()])``. Remote paths (``s3://`` ...) are
left to Lightning's own writer: object stores replace objects whole anyway.
"""

from __future__ import annotations

from typing import IO, Any

import torch
from lightning_fabric.utilities.cloud_io import _is_local_file_protocol
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.plugins.io import TorchCheckpointIO

from export.staging import write_file_atomically


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local writes are atomic and synced (see the module doc)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(
                f"Trainer.save_checkpoint(..., storage_options=...) is not supported by {type(self).__name__}"
            )
        if not _is_local_file_protocol(path):
            super().save_checkpoint(checkpoint, path)
            return
        write_file_atomically(path, lambda handle: self.serialise(checkpoint, handle), what="checkpoint")

    def serialise(self, checkpoint: dict[str, Any], handle: IO[bytes]) -> None:
        """Write ``checkpoint`` into the open file ``handle`` (``torch.save``'s zip format)."""
        torch.save(checkpoint, handle)
