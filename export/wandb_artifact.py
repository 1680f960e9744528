"""Log an export bundle to Weights & Biases as a model artifact (online or offline).

Lightning's ``WandbLogger(log_model=...)`` uploads raw checkpoints and refuses offline mode;
a bundle logged here is what analysis needs, and an offline run keeps it for ``wandb sync``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from export.bundle import Bundle


def artifact_name(run_id: str | None, fallback: str) -> str:
    """``model-<run id>`` (W&B's convention for a run's model), restricted to allowed characters."""
    name = f"model-{run_id}" if run_id else fallback
    return re.sub(r"[^\w.-]", "_", name)


def log_bundle_artifact(run: Any, bundle: Bundle, name: str, aliases: Sequence[str] = ("latest",)) -> Any:
    """Add the bundle folder to a ``model`` artifact called ``name`` and log it to ``run``.

    Args:
        run: a ``wandb`` run (``WandbLogger.experiment``, or ``wandb.init(...)``).
        bundle: the exported bundle.
        name: the artifact's name.
        aliases: W&B aliases of this version ("best", "latest" ...).

    Returns:
        The logged ``wandb.Artifact``.
    """
    import wandb

    metadata = {
        "dataset": bundle.metadata["dataset"]["name"],
        "backbone": bundle.metadata["model"]["backbone"],
        "epoch": bundle.metadata["training"].get("epoch"),
        "global_step": bundle.metadata["training"].get("global_step"),
        "clean_accuracy": bundle.metrics["clean_accuracy"],
        "pgd_accuracy": bundle.metrics["pgd_accuracy"],
        "source_checkpoint": bundle.metadata["source_checkpoint"]["path"],
    }
    artifact = wandb.Artifact(name, type="model", description="robustlens export bundle", metadata=metadata)
    artifact.add_dir(str(bundle.directory))
    return run.log_artifact(artifact, aliases=list(aliases))
