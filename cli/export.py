"""``python train.py export --ckpt_path <checkpoint> --out_dir <folder>``: write an export bundle.

When the checkpoint's recipe logged to W&B, the bundle is also logged as a ``model`` artifact
of a new W&B run (job type "export") in the same project and mode (offline runs keep it for
``wandb sync``); ``--wandb off`` skips that.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import yaml

from cli.errors import exit_with_error
from export.bundle import FILES, Bundle, export_bundle
from export.checkpoint import CheckpointError
from export.wandb_artifact import artifact_name, log_bundle_artifact


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python train.py export",
        description="Turn a robustlens checkpoint into a bundle that loads with plain PyTorch "
        "(see the bundle's README.md).",
    )
    parser.add_argument("--ckpt_path", required=True, help="the Lightning checkpoint (best-*.ckpt, last.ckpt)")
    parser.add_argument("--out_dir", required=True, help="the bundle folder to create")
    parser.add_argument("--overwrite", action="store_true", help="replace out_dir if it exists")
    parser.add_argument(
        "--wandb",
        choices=("auto", "off"),
        default="auto",
        help="auto: log the bundle as a W&B artifact when the recipe's logger was W&B (default); off: never",
    )
    return parser


def wandb_settings(config_yaml: str | None) -> dict[str, Any] | None:
    """project, save_dir and offline of the recipe's WandbLogger, or None if it used another."""
    config = yaml.safe_load(config_yaml or "") or {}
    loggers = (config.get("trainer") or {}).get("logger")
    for node in loggers if isinstance(loggers, list) else [loggers]:
        if isinstance(node, dict) and str(node.get("class_path", "")).endswith("WandbLogger"):
            args = node.get("init_args") or {}
            return {
                "project": args.get("project") or "lightning_logs",
                "save_dir": args.get("save_dir") or ".",
                "offline": bool(args.get("offline")),
            }
    return None


def log_to_wandb(bundle: Bundle, settings: dict[str, Any], run_id: str | None) -> str:
    """Log ``bundle`` in a new W&B run of job type "export"; returns a line for the summary."""
    import wandb

    os.makedirs(settings["save_dir"], exist_ok=True)
    run = wandb.init(
        project=settings["project"],
        dir=settings["save_dir"],
        job_type="export",
        mode="offline" if settings["offline"] else None,
        config={"source_checkpoint": bundle.metadata["source_checkpoint"], "training_run": run_id},
    )
    try:
        name = artifact_name(run_id, f"model-{run.id}")
        log_bundle_artifact(run, bundle, name)
    finally:
        run.finish()
    mode = "offline, sync with `wandb sync`" if settings["offline"] else "online"
    return f"W&B artifact {name}:latest in run {run.id} ({mode})"


def main(argv: list[str] | None = None) -> Bundle:
    """Parse ``argv`` (default ``sys.argv[2:]``), export, print a summary; exit 1 on a bad checkpoint."""
    args = build_parser().parse_args(sys.argv[2:] if argv is None else argv)
    try:
        bundle = export_bundle(args.ckpt_path, args.out_dir, overwrite=args.overwrite)
    except (CheckpointError, OSError) as error:  # OSError: a failed write (AtomicWriteError) included
        exit_with_error(str(error), 1, cause=error)
    lines = [
        f"robustlens: exported {args.ckpt_path}",
        f"  bundle: {bundle.directory} ({bundle.total_bytes / 1e6:.2f} MB, {bundle.seconds:.1f} s)",
    ]
    lines += [f"    {name:<18} {size / 1e6:9.3f} MB" for name, size in bundle.sizes.items()]
    if args.wandb == "auto":
        settings = wandb_settings((bundle.directory / FILES["config"]).read_text())
        if settings is not None:
            lines.append("  " + log_to_wandb(bundle, settings, bundle.metadata["training"].get("wandb_run_id")))
    print("\n".join(lines), flush=True)
    return bundle
