"""The README.md of an export bundle: what the model is, how it was trained, how to load it."""

from __future__ import annotations

import json
from typing import Any

import yaml

from lightning_modules.backbones import backbone_label

MAX_CLASSES_LISTED = 20


# Optimiser switches that choose an implementation, not the update rule.
_IMPLEMENTATION_ONLY = ("foreach", "fused", "capturable", "differentiable")


def _component(node: Any) -> str:
    """``Name(arg=value, ...)`` for a ``{class_path, init_args}`` config node (unset arguments
    and implementation switches left out)."""
    if not isinstance(node, dict) or "class_path" not in node:
        return "none" if node is None else json.dumps(node)
    name = str(node["class_path"]).rsplit(".", 1)[-1]
    args = ", ".join(
        f"{k}={_component(v) if isinstance(v, dict) else v}"
        for k, v in (node.get("init_args") or {}).items()
        if v is not None and k not in _IMPLEMENTATION_ONLY
    )
    return f"{name}({args})"


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def model_card(metadata: dict[str, Any], metrics: dict[str, Any]) -> str:
    """The model card of a bundle, from its ``bundle.json`` contents and ``metrics.json``."""
    data, model, training = metadata["dataset"], metadata["model"], metadata["training"]
    files = metadata["files"]
    c, h, w = model["input_shape"]
    names = data["class_names"]
    listed = ", ".join(names[:MAX_CLASSES_LISTED])
    if len(names) > MAX_CLASSES_LISTED:
        listed += f", ... ({len(names)} in all)"
    if training.get("max_steps") not in (None, -1):
        length = f"max_steps={training['max_steps']}"
    elif training.get("max_epochs") is not None:
        length = f"max_epochs={training['max_epochs']}"
    else:
        length = "length unknown"
    lines = [
        f"# {data['name']} classifier: {backbone_label(model['backbone'])}, {_component(training.get('objective')).split('(')[0]}",
        "",
        f"Exported by robustlens from `{metadata['source_checkpoint']['path']}` (epoch {training.get('epoch')}, "
        f"step {training.get('global_step')}) on {metadata['export']['time']} "
        f"with torch {metadata['export']['torch']}.",
        "",
        "## Model",
        "",
        f"- Input: float32 tensor (N, {c}, {h}, {w}) with values in [0, 1]. Do not normalise: the model's first",
        f"  layer `normalize` computes (x - mean) / std with mean {model['mean']} and std {model['std']}.",
        f"- Output: logits (N, {model['num_classes']}) over the classes {listed}.",
        f"- Architecture: `{backbone_label(model['backbone'])}`"
        + (f" with {model['backbone_kwargs']}" if model.get("backbone_kwargs") else "")
        + f", activation {model.get('activation', 'relu')}; {model['parameters']:,} parameters.",
        "",
        "## Training",
        "",
        f"- Data: {data['name']} (`{data.get('class_path')}`).",
        f"- Objective: `{_component(training.get('objective'))}`.",
        f"- Optimiser: `{_component(training.get('optimizer'))}`; "
        f"schedule: `{_component(training.get('lr_scheduler'))}`; {length}; seed {training.get('seed_everything')}.",
        f"- Robust accuracy measured with `{_component(training.get('eval_attack'))}`.",
        f"- The full recipe is in `{files['config']}`; `python train.py fit --config {files['config']}` in robustlens "
        "reruns it.",
        "",
        "## Metrics",
        "",
        f"From `{files['metrics']}`: {metrics['source']}.",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    shown = {**metrics["clean_accuracy"], **metrics["pgd_accuracy"], **metrics["explanation"]}
    lines += [f"| {name} | {_number(value)} |" for name, value in shown.items()]
    for monitor in metrics["checkpoint_monitors"]:
        lines.append(f"| best {monitor['name']} (checkpoint monitor) | {_number(monitor['best_score'])} |")
    if not shown and not metrics["checkpoint_monitors"]:
        lines.append("| (none recorded) | |")
    lines += [
        "",
        "## Files",
        "",
        "| file | holds |",
        "| --- | --- |",
        f"| `{files['program']}` | the model as a torch.export program (normalisation inside, any batch size) |",
        f"| `{files['weights']}` | its state_dict (keys `normalize.*`, `net.*`) in safetensors |",
        f"| `{files['state_dict']}` | the same state_dict for `torch.load(..., weights_only=True)` |",
        f"| `{files['config']}` | the resolved training recipe |",
        f"| `{files['metrics']}` | metrics recorded with the checkpoint |",
        f"| `{files['metadata']}` | dataset facts, architecture, provenance, size and SHA-256 of every other file |",
        "",
        "## Loading with plain PyTorch",
        "",
        "Run from this folder. The first lines check that every file is the one exported (a truncated copy or",
        "replaced weights stop here, with the file named):",
        "",
        "```python",
        "import hashlib, json, pathlib",
        "import torch",
        "",
        f'meta = json.loads(pathlib.Path("{files["metadata"]}").read_text())',
        'for name, digest in meta["sha256"].items():',
        "    data = pathlib.Path(name).read_bytes()",
        '    if len(data) != meta["bytes"][name] or hashlib.sha256(data).hexdigest() != digest:',
        f'        raise RuntimeError(f"{{name}} differs from what {files["metadata"]} records: truncated, corrupted or replaced")',
        "",
        f'program = torch.export.load("{files["program"]}")',
        "model = program.module()  # takes images in [0, 1]",
        f"x = torch.rand(8, {c}, {h}, {w}, requires_grad=True)",
        "logits = model(x)",
        "# saliency: gradient of each example's target logit with respect to its input",
        "target = logits.argmax(1)",
        "(saliency,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), [x])",
        "```",
        "",
        "The graph was captured in eval mode (BatchNorm uses its running statistics). `program.module()`",
        "refuses `.eval()` and `.train()`; tools that call them (Quantus) or that hook layers (Grad-CAM)",
        "should use `torch.export.unflatten(program)`, which keeps the submodules (`net.*`).",
        "",
        "The weights alone, for a model built from the same architecture:",
        "",
        "```python",
        "from safetensors.torch import load_file",
        "",
        f'state_dict = load_file("{files["weights"]}")',
        f'# or: state_dict = torch.load("{files["state_dict"]}", weights_only=True)',
        "```",
        "",
        "In robustlens, `export.load_bundle(<this folder>)` checks the files the same way and rebuilds the model as",
        "a regular module; `python train.py report --bundle <this folder>` checks them before reporting",
        "(`--no-verify` / `verify=False` skip the check for a bundle changed on purpose).",
        "",
        "## Details",
        "",
        "```yaml",
        yaml.safe_dump({"dataset": data, "export": metadata["export"]}, sort_keys=False).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)
