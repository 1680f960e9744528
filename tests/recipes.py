"""Reading the recipes in configs/ as the command line composes them, for the recipe tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MONITORS = ("callbacks.ExplanationMonitor", "callbacks.RobustnessEvaluator", "callbacks.SanityCheck")


def recipe_path(recipe: str | Path) -> Path:
    """``configs/<recipe>.yaml`` for a name such as ``mnist/pgd_at`` (or ``mnist/pgd_at.yaml``),
    or the path itself when absolute."""
    path = Path(recipe)
    if path.is_absolute():
        return path
    return CONFIGS / (path if path.suffix == ".yaml" else path.with_suffix(".yaml"))


def callback_list(recipe: str | Path) -> list[dict[str, Any]]:
    """The recipe's ``trainer.callbacks``, read from the file it names when it names one
    (resolved next to the recipe, as jsonargparse resolves it)."""
    path = recipe_path(recipe)
    callbacks = yaml.safe_load(path.read_text())["trainer"]["callbacks"]
    if isinstance(callbacks, str):
        callbacks = yaml.safe_load((path.parent / callbacks).read_text())
    return callbacks


def small_probes(recipe: str | Path, probe_size: int = 4, every_step: bool = False) -> str:
    """``--trainer.callbacks=...``: the recipe's callbacks with the monitors' probe sets cut to
    ``probe_size`` images (tiny validation splits) and at most 2 panels, and with ``every_step`` the periodic ones due
    after every optimiser step. A list given on the command line is merged item by item into the
    recipe's, so a cadence is replaced by writing the other one as null."""
    out = []
    for node in callback_list(recipe):
        args = dict(node.get("init_args") or {})
        if node["class_path"] in MONITORS:
            args["probe_size"] = probe_size
            if args.get("panels"):
                args["panels"] = min(args["panels"], 2)
            if every_step and ("every_n_epochs" in args or "every_n_steps" in args):
                args.update(every_n_epochs=None, every_n_steps=1)
        out.append({**node, "init_args": args} if args else node)
    return f"--trainer.callbacks={json.dumps(out)}"


def without_monitors(recipe: str | Path) -> str:
    """``--trainer.callbacks=...``: the recipe's callbacks without the monitoring ones, for tests
    that train through a recipe for something else (a checkpoint to report on)."""
    kept = [node for node in callback_list(recipe) if node["class_path"] not in MONITORS]
    return f"--trainer.callbacks={json.dumps(kept)}"
