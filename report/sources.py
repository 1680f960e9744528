"""The model a report analyses, from a Lightning checkpoint or an export bundle, with what its run
recorded about the data and the evaluation attack.

Both are read without unpickling code: checkpoints through :func:`export.load_classifier`
(``torch.load(weights_only=True)`` after an integrity check), bundles through
:func:`export.load_bundle` (safetensors). A bundle holds the checkpoint's resolved recipe
(``config.yaml``), so a checkpoint and the bundle exported from it give the same datamodule,
the same ε grid and the same weights: the same report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from export import FILES, LoadedClassifier, load_bundle, load_classifier

SourceKind = Literal["checkpoint", "bundle"]


@dataclass
class Source:
    """A loaded classifier and what its run recorded.

    Attributes:
        kind: "checkpoint" or "bundle".
        path: the checkpoint file or the bundle folder.
        loaded: the classifier (CPU, eval mode) and its architecture.
        data_config: the recipe's datamodule node ``{class_path, init_args}``, or None.
        eval_attack: the recipe's evaluation attack node ``{class_path, init_args}``, or None.
    """

    kind: SourceKind
    path: Path
    loaded: LoadedClassifier
    data_config: dict[str, Any] | None
    eval_attack: dict[str, Any] | None


def _recipe(text: str | None, where: Path) -> dict[str, Any]:
    try:
        recipe = yaml.safe_load(text or "") or {}
    except yaml.YAMLError as error:
        raise ValueError(f"the recipe recorded in {where} is not valid YAML: {error}") from error
    return recipe if isinstance(recipe, dict) else {}


def _node(value: Any) -> dict[str, Any] | None:
    """``value`` when it is a ``{class_path, init_args}`` config node."""
    if isinstance(value, dict) and value.get("class_path"):
        return {"class_path": value["class_path"], "init_args": dict(value.get("init_args") or {})}
    return None


def load_source(ckpt_path: str | Path | None, bundle: str | Path | None, verify: bool = True) -> Source:
    """Load the classifier of exactly one of ``ckpt_path`` and ``bundle``.

    A bundle's files are checked against its ``bundle.json`` first unless ``verify`` is off.

    Raises:
        FileNotFoundError: when the file or folder does not exist.
        export.CheckpointError: when it is truncated, corrupted, holds code or is not robustlens's,
            or (export.integrity.BundleIntegrityError) a bundle file differs from its bundle.json.
        ValueError: when both or neither are given.
    """
    if (ckpt_path is None) == (bundle is None):
        raise ValueError(f"exactly one of ckpt_path and bundle must be given, got ckpt_path={ckpt_path}, bundle={bundle}")
    if ckpt_path is not None:
        path = Path(ckpt_path)
        loaded = load_classifier(path)
        recipe = _recipe(loaded.metadata.get("config"), path)
        data = _node(recipe.get("data"))
        if data is None and loaded.datamodule_hparams.get("_class_path"):  # saved outside train.py
            init_args = {k: v for k, v in loaded.datamodule_hparams.items() if not k.startswith("_")}
            data = {"class_path": loaded.datamodule_hparams["_class_path"], "init_args": init_args}
        eval_attack = _node((recipe.get("model") or {}).get("eval_attack"))
        return Source("checkpoint", path, loaded, data, eval_attack)
    path = Path(bundle)  # type: ignore[arg-type]
    loaded = load_bundle(path, verify=verify)
    config_file = path / FILES["config"]
    recipe = _recipe(config_file.read_text() if config_file.is_file() else None, config_file)
    metadata = loaded.metadata.get("bundle") or {}
    data = _node(recipe.get("data")) or _node((metadata.get("training") or {}).get("data"))
    eval_attack = _node((recipe.get("model") or {}).get("eval_attack")) or _node(
        (metadata.get("training") or {}).get("eval_attack")
    )
    return Source("bundle", path, loaded, data, eval_attack)
