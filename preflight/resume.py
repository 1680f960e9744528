"""Resuming a fit continues the run it comes from, and only that run.

A Lightning checkpoint restores weights, optimiser, loops and callbacks; robustlens checkpoints
also record the run's resolved recipe and where it logged (:mod:`callbacks.checkpoint_metadata`).
Two things follow for ``fit --ckpt_path``:

- :func:`recipe_differences` compares the recipe the checkpoint was trained with and the one
  given now. LightningCLI builds the model from the checkpoint's hyper-parameters, whatever the
  recipe says, while the data, the seed and the trainer come from the recipe: a checkpoint of
  another objective, architecture or dataset would continue as a silent mix (or fail inside
  ``load_state_dict``). Such a resume is refused with each differing field named, both values
  shown. Fields that say where and how the data is read (``data_dir``, ``download``,
  ``num_workers``, ``eval_batch_size``) and the trainer (more epochs, other devices) may change.
- :func:`continue_loggers` points each logger at the run the checkpoint logged to (the W&B run
  id, the CSV/TensorBoard version), unless the recipe names one itself. The run keeps its
  curves in one W&B run, its checkpoints in one folder (``<save_dir>/<project>/<id>/checkpoints``),
  and ``ModelCheckpoint`` keeps the best checkpoint of the whole run.
- :func:`keep_csv_history` keeps a CSV-logged run's curve whole: Lightning's ``CSVLogger``
  deletes the ``metrics.csv`` of a version folder it opens again, which would leave a resumed
  run with the rows logged after the resume only.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

COMPARED = ("seed_everything", "model", "data")
MAY_CHANGE = (
    "data.init_args.data_dir",
    "data.init_args.download",
    "data.init_args.num_workers",
    "data.init_args.eval_batch_size",
)
#: A class backbone's arguments that the data fills in when the model is built
#: (:data:`lightning_modules.LINKED_ARGUMENTS`): the recipe's value is replaced, so only the
#: data's own fields, compared above, can differ.
FILLED_FROM_DATA = tuple(
    f"model.backbone.init_args.{name}" for name in ("num_classes", "in_channels", "input_shape", "image_size")
)


def recipe_differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(field, value in the checkpoint's recipe, value now)`` for every field that differs.

    Only fields present in both recipes are compared (a field added to the code since the
    checkpoint was saved is not a difference). When a ``class_path`` differs, its ``init_args``
    are not listed: they belong to different classes.
    """
    found: list[tuple[str, Any, Any]] = []
    for key in COMPARED:
        if key in recorded and key in current:
            _compare(recorded[key], current[key], key, found)
    return found


def _compare(old: Any, new: Any, path: str, found: list[tuple[str, Any, Any]]) -> None:
    if path in MAY_CHANGE or path in FILLED_FROM_DATA:
        return
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        if "class_path" in old and "class_path" in new and old["class_path"] != new["class_path"]:
            found.append((f"{path}.class_path", old["class_path"], new["class_path"]))
            return
        for key in old:
            if key in new:
                _compare(old[key], new[key], f"{path}.{key}", found)
        return
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            _compare(a, b, f"{path}[{i}]", found)
        return
    if old != new:
        found.append((path, old, new))


def describe_differences(path: str, differences: list[tuple[str, Any, Any]]) -> str:
    """The message that refuses to resume ``path`` with another recipe."""
    lines = [f"{field}: {old!r} in the checkpoint's recipe, {new!r} in this one" for field, old, new in differences]
    return (
        f"{path} was trained with another recipe; resuming it with this one would mix two runs. Fields that differ:\n  "
        + "\n  ".join(lines)
        + "\nResume with the checkpoint's own recipe (the run's config.yaml), or start a new fit without --ckpt_path."
    )


def recorded_loggers(metadata: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """``[{class_path, version}]`` of the loggers the checkpoint's run used (older checkpoints:
    the W&B run id only)."""
    if not isinstance(metadata, Mapping):
        return []
    loggers = metadata.get("loggers")
    if isinstance(loggers, list):
        return [dict(entry) for entry in loggers if isinstance(entry, Mapping)]
    run_id = metadata.get("wandb_run_id")
    return [{"class_path": "pytorch_lightning.loggers.WandbLogger", "version": run_id}] if run_id else []


def _class_name(class_path: Any) -> str:
    return str(class_path).rsplit(".", 1)[-1]


def _is_node(value: Any) -> bool:
    """A configuration node: a dict or a jsonargparse Namespace (both have get and item assignment)."""
    return hasattr(value, "get") and hasattr(value, "__setitem__")


def continue_loggers(trainer_config: Any, recorded: list[dict[str, Any]]) -> list[str]:
    """Point the configured loggers at the runs ``recorded`` (see the module doc).

    Args:
        trainer_config: the ``trainer`` configuration (a dict or a jsonargparse Namespace),
            changed in place: ``init_args.id`` of a WandbLogger, ``init_args.version`` of another
            logger, when the recipe leaves both unset.
        recorded: :func:`recorded_loggers` of the checkpoint.

    Returns:
        One line per logger pointed at its earlier run.
    """
    node = trainer_config.get("logger")
    nodes = node if isinstance(node, list) else [node]
    done = []
    for entry, logger in zip(recorded, nodes):
        if not _is_node(logger) or entry.get("version") is None:
            continue
        name = _class_name(logger.get("class_path"))
        if name != _class_name(entry.get("class_path")):
            continue
        init_args = logger.get("init_args")
        if init_args is None:
            logger["init_args"] = init_args = type(logger)()
        if init_args.get("version") is not None or init_args.get("id") is not None:
            continue  # the recipe chose the run itself
        key = "id" if name == "WandbLogger" else "version"
        init_args[key] = entry["version"]
        done.append(f"{name} {key}={entry['version']!r}")
    return done


def keep_csv_history(loggers: Iterable[Any], checkpoint_step: int) -> list[str]:
    """Carry the rows a resumed run's CSV loggers logged up to its checkpoint into the new file.

    Call before the loggers' experiments exist (Lightning creates them when the fit sets up, and a
    ``CSVLogger``'s writer then deletes the folder's ``metrics.csv``). Rows logged after the
    checkpoint's step (by the pre-empted process after its last checkpoint) are dropped: the
    resumed fit logs those steps again.

    Args:
        loggers: the trainer's loggers; those that are not ``CSVLogger`` are left alone.
        checkpoint_step: the checkpoint's ``global_step``.

    Returns:
        One line per logger whose earlier rows were kept.
    """
    from pytorch_lightning.loggers import CSVLogger

    kept = []
    for logger in loggers:
        if not isinstance(logger, CSVLogger):
            continue
        path = Path(logger.log_dir) / "metrics.csv"
        if not path.is_file():
            continue
        with path.open(newline="") as file:
            rows = [
                {key: value for key, value in row.items() if value not in ("", None)}
                for row in csv.DictReader(file)
                if _row_step(row) <= checkpoint_step
            ]
        writer = logger.experiment  # Lightning's writer: deletes metrics.csv
        writer.metrics[:0] = rows  # written, header and all, with the first rows of the resumed fit
        kept.append(f"{path}: {len(rows)} earlier rows kept")
    return kept


def _row_step(row: Mapping[str, Any]) -> float:
    try:
        return float(row.get("step") or "inf")
    except ValueError:
        return float("inf")
