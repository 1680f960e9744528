"""Turn a robustlens checkpoint into a bundle that loads with plain PyTorch, without this code.

A bundle is a folder::

    model.pt2          the classifier as a torch.export program (normalisation inside, inputs in
                       [0, 1], any batch size): torch.export.load(path).module()
    model.safetensors  its state_dict (keys normalize.*, net.*; no model./module. prefix)
    state_dict.pt      the same tensors for torch.load(path, weights_only=True)
                       (RobustBench-style loaders)
    config.yaml        the resolved training recipe
    metrics.json       the metrics the run had logged when the checkpoint was saved
    bundle.json        dataset (name, classes, input shape, value range), architecture,
                       provenance, export check, size and SHA-256 of every other file
    README.md          the model card: how it was trained, how to load it

Why torch.export and not TorchScript: TorchScript is deprecated in the PyTorch this project
uses (``torch.jit.trace``/``load`` warn), while an exported program loads with
``torch.export.load`` in plain torch, runs eagerly, and differentiates with respect to its
input, so saliency-style attributions (Captum, Quantus, a notebook) work on it. The graph is
captured in eval mode (BatchNorm on running statistics). ``program.module()`` refuses
``.eval()``/``.train()``; ``torch.export.unflatten(program)`` gives a module that accepts them
and keeps the submodule hierarchy for layer hooks (Grad-CAM).

The bundle is written into a hidden sibling folder, synced to the disk and swapped into place at
the end (:func:`export.staging.staged_folder`), so a failed or killed export leaves no
half-written bundle and an earlier bundle in ``out_dir`` whole. Before the move, the saved program is loaded back
and compared with the checkpoint's model on seeded random inputs (logits and input
gradients); the differences are recorded in ``bundle.json``.

Readers check every file against the sizes and digests in ``bundle.json`` before loading
(:mod:`export.integrity`): :func:`load_bundle` does unless ``verify=False``.
"""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import yaml
from torch import Tensor, nn

from export.checkpoint import CheckpointError, LoadedClassifier, load_classifier, load_weights
from export.integrity import file_records, sha256, verify_bundle
from lightning_modules import build_model
from export.model_card import model_card
from export.staging import staged_folder

BUNDLE_FORMAT = "robustlens-bundle"
BUNDLE_VERSION = 1
FILES = {
    "program": "model.pt2",
    "weights": "model.safetensors",
    "state_dict": "state_dict.pt",
    "config": "config.yaml",
    "metrics": "metrics.json",
    "metadata": "bundle.json",
    "model_card": "README.md",
}
CHECK_INPUTS = 8
CHECK_TOLERANCE = 1e-4


@dataclass
class Bundle:
    """An exported bundle.

    Attributes:
        directory: the bundle folder.
        metadata: the contents of ``bundle.json``.
        metrics: the contents of ``metrics.json``.
        sizes: bytes of every file, by name.
        seconds: wall time of the export.
    """

    directory: Path
    metadata: dict[str, Any]
    metrics: dict[str, Any]
    sizes: dict[str, int]
    seconds: float

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())


def export_program(model: nn.Module, input_shape: list[int]) -> torch.export.ExportedProgram:
    """``model`` (in eval mode) as a torch.export program with a dynamic batch dimension."""
    example = torch.rand(2, *input_shape, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1)
    try:
        return torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    except Exception as error:  # torch.export raises many kinds; report them all the same way
        raise CheckpointError(f"torch.export could not capture the model: {type(error).__name__}: {error}") from error


def logits_and_saliency(model: nn.Module, x: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Logits, and the gradient of each example's ``target`` logit with respect to its input."""
    x = x.clone().requires_grad_(True)
    logits = model(x)  # (N, K)
    (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), [x])
    return logits.detach(), grad


def check_program(model: nn.Module, program_path: Path, input_shape: list[int], num_classes: int) -> dict[str, Any]:
    """Load the saved program back and compare it with ``model`` on seeded random inputs."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(CHECK_INPUTS, *input_shape, generator=generator)
    target = torch.randint(0, num_classes, (CHECK_INPUTS,), generator=generator)
    loaded = torch.export.load(program_path).module()
    logits, saliency = logits_and_saliency(model, x, target)
    program_logits, program_saliency = logits_and_saliency(loaded, x, target)
    logit_diff = float((logits - program_logits).abs().max())
    saliency_diff = float((saliency - program_saliency).abs().max())
    scale = float(logits.abs().max()) + 1.0
    if logit_diff > CHECK_TOLERANCE * scale:
        raise CheckpointError(f"the exported program's logits differ from the model's by {logit_diff:.3g}")
    return {
        "inputs": CHECK_INPUTS,
        "max_abs_logit_difference": logit_diff,
        "max_abs_saliency_difference": saliency_diff,
    }


def training_summary(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a resolved recipe a model card states: objective, attacks, optimiser, length."""
    model = config.get("model") or {}
    trainer = config.get("trainer") or {}
    return {
        "objective": model.get("objective"),
        "eval_attack": model.get("eval_attack"),
        "optimizer": model.get("optimizer"),
        "lr_scheduler": model.get("lr_scheduler"),
        "max_epochs": trainer.get("max_epochs"),
        "max_steps": trainer.get("max_steps"),
        "precision": trainer.get("precision"),
        "seed_everything": config.get("seed_everything"),
        "data": config.get("data"),
    }


def dataset_facts(loaded: LoadedClassifier) -> dict[str, Any]:
    """Dataset facts from the checkpoint's metadata, or what the architecture implies."""
    facts = loaded.metadata.get("data")
    if isinstance(facts, dict):
        return facts
    arch = loaded.architecture
    class_path = loaded.datamodule_hparams.get("_class_path")
    return {
        "name": class_path.rsplit(".", 1)[-1] if class_path else "unknown",
        "class_path": class_path,
        "num_classes": int(arch["num_classes"]),
        "class_names": [str(i) for i in range(int(arch["num_classes"]))],
        "input_shape": arch["input_shape"],
        "value_range": [0.0, 1.0],
        "mean": arch["mean"],
        "std": arch["std"],
    }


def metrics_record(loaded: LoadedClassifier, eval_attack: Any) -> dict[str, Any]:
    """``metrics.json``: what the run logged up to the checkpoint's save, not recomputed."""
    logged = loaded.metadata.get("metrics") or {}
    record: dict[str, Any] = {
        "source": (
            "logged by the training run up to the save of this checkpoint (trainer.callback_metrics); "
            "not recomputed at export"
            if logged
            else "the checkpoint recorded no metrics (saved outside train.py); only checkpoint monitors are known"
        ),
        "epoch": loaded.metadata.get("epoch", loaded.epoch),
        "global_step": loaded.metadata.get("global_step", loaded.global_step),
        "clean_accuracy": {k: v for k, v in logged.items() if k.endswith("/acc") and not k.startswith("train/")},
        "pgd_accuracy": {k: v for k, v in logged.items() if k.endswith("/acc_pgd")},
        "pgd_attack": eval_attack,
        "explanation": {k: v for k, v in logged.items() if "/expl" in k},
        "logged": logged,
        "checkpoint_monitors": loaded.monitored,
    }
    return record


def _default_config(loaded: LoadedClassifier) -> str:
    hparams = {k: v for k, v in loaded.hparams.items() if not k.startswith("_")}
    data = {k: v for k, v in loaded.datamodule_hparams.items() if not k.startswith("_")}
    doc = {
        "model": _plain(hparams),
        "data": {"class_path": loaded.datamodule_hparams.get("_class_path"), "init_args": _plain(data)},
    }
    return (
        "# The checkpoint was saved outside train.py and holds no resolved recipe; these are the\n"
        "# model's and the datamodule's hyperparameters only (objective, attacks and optimiser unknown).\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists, for YAML and JSON."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def export_bundle(checkpoint: str | Path, out_dir: str | Path, overwrite: bool = False) -> Bundle:
    """Export the RobustClassifier checkpoint ``checkpoint`` as a bundle in ``out_dir``.

    Args:
        checkpoint: a Lightning checkpoint written by ``train.py fit``.
        out_dir: the bundle folder; it must not exist or be empty, unless ``overwrite``.
        overwrite: replace an existing ``out_dir``.

    Returns:
        The :class:`Bundle` written.

    Raises:
        FileNotFoundError: when ``checkpoint`` does not exist.
        FileExistsError: when ``out_dir`` holds files and ``overwrite`` is off.
        CheckpointError: naming the file, when the checkpoint is truncated, corrupted, holds
            code, is not a RobustClassifier checkpoint, or cannot be exported.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"out_dir {out_dir} exists and is not empty; choose another or pass --overwrite")
    loaded = load_classifier(checkpoint)
    model, arch = loaded.model, loaded.architecture
    config_text = loaded.metadata.get("config") or _default_config(loaded)
    config = yaml.safe_load(config_text) or {}
    summary = training_summary(config)
    data = dataset_facts(loaded)
    metrics = metrics_record(loaded, summary["eval_attack"])
    program = export_program(model, arch["input_shape"])

    with staged_folder(out_dir, what="export bundle") as staging:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        safetensors.torch.save_file(
            state,
            staging / FILES["weights"],
            metadata={"format": "pt", "producer": BUNDLE_FORMAT, "architecture": json.dumps(_plain(arch))},
        )
        torch.save(state, staging / FILES["state_dict"])
        torch.export.save(program, staging / FILES["program"])
        check = check_program(model, staging / FILES["program"], arch["input_shape"], int(arch["num_classes"]))
        (staging / FILES["config"]).write_text(config_text)
        (staging / FILES["metrics"]).write_text(json.dumps(metrics, indent=2) + "\n")
        metadata: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "files": FILES,
            "dataset": data,
            "model": {
                **_plain(arch),
                "parameters": sum(p.numel() for p in model.parameters()),
                "input": f"float32 (N, {', '.join(str(v) for v in arch['input_shape'])}) with values in [0, 1]",
                "output": f"logits (N, {arch['num_classes']})",
                "normalization": "inside the model: its first layer 'normalize' computes (x - mean) / std",
            },
            "training": {
                **_plain(summary),
                "epoch": metrics["epoch"],
                "global_step": metrics["global_step"],
                "wandb_run_id": loaded.metadata.get("wandb_run_id"),
            },
            "source_checkpoint": {"path": str(Path(checkpoint).resolve()), "sha256": sha256(Path(checkpoint))},
            "export": {
                "torch": str(torch.__version__),
                "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "program_check": check,
            },
        }
        (staging / FILES["model_card"]).write_text(model_card(metadata, metrics))
        recorded = [FILES[key] for key in ("program", "weights", "state_dict", "config", "metrics", "model_card")]
        metadata.update(file_records(staging, recorded))
        (staging / FILES["metadata"]).write_text(json.dumps(metadata, indent=2) + "\n")
    sizes = {p.name: p.stat().st_size for p in sorted(out_dir.iterdir())}
    return Bundle(out_dir, metadata, metrics, sizes, time.perf_counter() - start)


def read_bundle_metadata(directory: str | Path) -> dict[str, Any]:
    """The ``bundle.json`` of a bundle folder, checked to be one."""
    path = Path(directory) / FILES["metadata"]
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a robustlens bundle: it has no {FILES['metadata']}")
    try:
        metadata = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is corrupted: {error}") from error
    if not isinstance(metadata, dict) or metadata.get("format") != BUNDLE_FORMAT:
        raise CheckpointError(f"{path} is not a robustlens bundle description")
    return metadata


def load_bundle(directory: str | Path, verify: bool = True) -> LoadedClassifier:
    """Rebuild a bundle's classifier as a regular module (hooks, ``.eval()``, ``.train()``).

    The architecture is built with this repository's :func:`build_model` and given the
    bundle's safetensors weights; without this repository, load ``model.pt2`` instead (see
    the bundle's README.md).

    Args:
        directory: the bundle folder.
        verify: check every file's size and SHA-256 against ``bundle.json`` first; turn it off
            only for a bundle changed on purpose.

    Raises:
        FileNotFoundError: when the folder is no bundle.
        export.integrity.BundleIntegrityError: naming the files that are missing or differ from
            ``bundle.json`` (with ``verify``).
        CheckpointError: when the weights are unreadable or do not fit the architecture.
    """
    directory = Path(directory)
    metadata = read_bundle_metadata(directory)
    if verify:
        verify_bundle(directory, metadata)
    weights = directory / FILES["weights"]
    if not weights.is_file():
        raise FileNotFoundError(f"bundle {directory} has no {FILES['weights']}")
    try:
        state = safetensors.torch.load_file(weights)
    except (OSError, RuntimeError, ValueError) as error:  # safetensors reports damage as any of these
        raise CheckpointError(f"bundle weights {weights} are truncated or corrupted: {error}") from error
    arch = {k: metadata["model"][k] for k in ("backbone", "num_classes", "input_shape", "mean", "std")}
    optional = ("activation", "softplus_beta", "backbone_kwargs")
    arch.update({k: metadata["model"][k] for k in optional if k in metadata["model"]})
    model = build_model(**arch)
    load_weights(model, state, weights)
    model.eval()
    training = metadata.get("training") or {}
    return LoadedClassifier(
        model=model,
        architecture=arch,
        metadata={"data": metadata.get("dataset"), "bundle": metadata},
        path=directory,
        epoch=training.get("epoch"),
        global_step=training.get("global_step"),
    )
