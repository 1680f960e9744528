"""Read a robustlens Lightning checkpoint for analysis, safely, and rebuild its classifier.

Checkpoints are loaded with ``torch.load(weights_only=True)``: tensors and plain data only,
never code stored in the file. Before that, the file is checked as the zip archive PyTorch
writes, entry by entry against its CRC-32, so a truncated or corrupted file is reported as such
(with its path), not as an error from deep inside torch, and a flipped byte in a weight tensor
is not loaded silently.

The classifier is rebuilt from the checkpoint's hyperparameters with
:func:`lightning_modules.build_model` (``Normalize`` then the backbone) and gets the
``model.*`` weights of the LightningModule, without the prefix.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lightning_modules import build_model

CHECKPOINT_KEY = "robustlens"  # the entry callbacks.checkpoint_metadata writes
MODEL_PREFIX = "model."
ARCHITECTURE_KEYS = ("backbone", "num_classes", "input_shape", "mean", "std")
OPTIONAL_ARCHITECTURE_KEYS = ("activation", "softplus_beta", "backbone_kwargs")


class CheckpointError(ValueError):
    """A checkpoint (or bundle) that cannot be used; the message names the file and why."""


def check_archive(path: Path, what: str = "checkpoint") -> None:
    """Raise a :class:`CheckpointError` unless ``path`` is a complete, intact zip archive."""
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{what} {path} is not a file")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{what} {path} is truncated or corrupted, or not a PyTorch file: it is not the zip archive "
            f"torch.save writes ({path.stat().st_size} bytes)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise CheckpointError(f"{what} {path} is corrupted: {error}") from error
    if bad is not None:
        raise CheckpointError(f"{what} {path} is corrupted: its entry {bad!r} fails the CRC-32 check")


def safe_torch_load(path: Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, with errors that name ``path``."""
    check_archive(path, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        detail = f" (it refers to {found.group(1)})" if found else ""
        raise CheckpointError(
            f"{what} {path} holds Python objects other than tensors and plain data{detail}; it is loaded with "
            "torch.load(weights_only=True), which runs no code stored in a file. If you trust the file, load it "
            "yourself and save its state_dict."
        ) from error
    except (RuntimeError, EOFError, OSError, KeyError, ValueError) as error:
        raise CheckpointError(f"{what} {path} is truncated or corrupted: {str(error).splitlines()[0]}") from error


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The contents of a Lightning checkpoint of :class:`RobustClassifier`, checked.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        CheckpointError: when the file is truncated, corrupted, holds code, or is not a
            RobustClassifier checkpoint; the message names the file.
    """
    path = Path(path)
    checkpoint = safe_torch_load(path)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"checkpoint {path} is not a Lightning checkpoint: it has no 'state_dict'")
    hparams = checkpoint.get("hyper_parameters")
    missing = [k for k in ARCHITECTURE_KEYS if not isinstance(hparams, dict) or k not in hparams]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} is not a robustlens RobustClassifier checkpoint: its hyper_parameters lack {missing}"
        )
    return checkpoint


def architecture(hparams: dict[str, Any]) -> dict[str, Any]:
    """The arguments of :func:`build_model` among a RobustClassifier's hyperparameters."""
    arch = {k: hparams[k] for k in ARCHITECTURE_KEYS}
    arch.update({k: hparams[k] for k in OPTIONAL_ARCHITECTURE_KEYS if k in hparams})
    arch["input_shape"] = [int(v) for v in arch["input_shape"]]
    arch["mean"] = [float(v) for v in arch["mean"]]
    arch["std"] = [float(v) for v in arch["std"]]
    return arch


def model_state_dict(checkpoint_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The classifier's weights from a LightningModule state_dict: ``model.*`` without the prefix."""
    return {k[len(MODEL_PREFIX) :]: v for k, v in checkpoint_state.items() if k.startswith(MODEL_PREFIX)}


def load_weights(model: nn.Module, state_dict: dict[str, Tensor], source: str | Path) -> None:
    """``model.load_state_dict(state_dict)`` (strict), or a :class:`CheckpointError` naming
    ``source`` and listing missing keys, unexpected keys and shape mismatches."""
    check_weights_fit(model, state_dict, source)
    model.load_state_dict(state_dict)


def check_weights_fit(model: nn.Module, state_dict: dict[str, Tensor], source: str | Path) -> None:
    """Raise a :class:`CheckpointError` naming ``source`` unless ``state_dict`` has exactly the
    keys and shapes of ``model``'s (without loading anything)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = [
        f"{k}: {tuple(state_dict[k].shape)} in the file, {tuple(own[k].shape)} in the model"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:

        def first(items: list[str]) -> str:
            return ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")

        problems = []
        if missing:
            problems.append(f"missing {len(missing)} tensor(s): {first(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected tensor(s): {first(unexpected)}")
        if mismatched:
            problems.append(f"{len(mismatched)} shape mismatch(es): {first(mismatched)}")
        raise CheckpointError(f"the weights in {source} do not fit this architecture: " + "; ".join(problems))


@dataclass
class LoadedClassifier:
    """A classifier rebuilt from a checkpoint, in eval mode, on the CPU.

    Attributes:
        model: ``nn.Sequential(normalize=Normalize, net=backbone)``; takes images in [0, 1].
        architecture: the :func:`build_model` arguments it was built with.
        metadata: the checkpoint's ``robustlens`` entry (config, data facts, metrics), or {}.
        path: the checkpoint file.
        epoch: the epoch the checkpoint was saved in.
        global_step: the optimiser steps taken when it was saved.
        monitored: ``{name, best_score}`` of the checkpoint callbacks that recorded a best score.
        hparams: the LightningModule's hyperparameters.
        datamodule_hparams: the datamodule's hyperparameters, or {}.
    """

    model: nn.Module
    architecture: dict[str, Any]
    metadata: dict[str, Any]
    path: Path
    hparams: dict[str, Any] = field(default_factory=dict)
    datamodule_hparams: dict[str, Any] = field(default_factory=dict)
    epoch: int | None = None
    global_step: int | None = None
    monitored: list[dict[str, Any]] = field(default_factory=list)


def load_classifier(path: str | Path) -> LoadedClassifier:
    """Rebuild the classifier of the RobustClassifier checkpoint ``path`` (see the module doc).

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        CheckpointError: naming the file, when it is truncated, corrupted, holds code, is not a
            RobustClassifier checkpoint, or its weights do not fit its architecture.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path)
    arch = architecture(checkpoint["hyper_parameters"])
    try:
        model = build_model(**arch)
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"checkpoint {path}: cannot build its architecture {arch}: {error}") from error
    load_weights(model, model_state_dict(checkpoint["state_dict"]), path)
    model.eval()
    monitored = []
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if isinstance(state, dict) and state.get("monitor") and state.get("best_model_score") is not None:
            score = state["best_model_score"]
            monitored.append({"name": state["monitor"], "best_score": float(score), "callback": key.split("{")[0]})
    metadata = checkpoint.get(CHECKPOINT_KEY)
    return LoadedClassifier(
        model=model,
        architecture=arch,
        metadata=metadata if isinstance(metadata, dict) else {},
        path=path,
        hparams=dict(checkpoint["hyper_parameters"]),
        datamodule_hparams=dict(checkpoint.get("datamodule_hyper_parameters") or {}),
        epoch=checkpoint.get("epoch"),
        global_step=checkpoint.get("global_step"),
        monitored=monitored,
    )
