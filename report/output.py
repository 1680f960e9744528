"""Write a computed report into its folder::

    report.json           every number, with the settings that produced it (machine-readable)
    report.md             the same as tables: accuracy against ε, methods × metrics
    attributions.png      inputs and each method's maps for a few test examples
    accuracy_vs_eps.png   accuracy under each attack against ε, and the worst case
    concepts.png          CRP: heatmaps of the most relevant channels of a layer, first examples
                          (left out with crp_examples 0)

When PGD on the cross-entropy leaves more than 5 points more examples standing than AutoAttack
(or, without AutoAttack, than the strongest other attack) at some ε, the report says so in bold:
a saturated softmax or masked gradients make the cross-entropy figure an overstatement.

The files are written into a hidden sibling folder, synced to the disk and swapped into place at
the end (:func:`export.staging.staged_folder`), so a report that fails or is killed half-way
leaves nothing behind and an earlier report in the folder whole.
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import Any

import torch

from attacks import PGD, AutoAttack
from attacks.autoattack import sub_attacks
from export.staging import staged_folder
from lightning_modules.backbones import backbone_label
from metrics import metric_spec
from report.compute import ReportResult
from report.plan import FAST_PROFILE, ReportPlan
from report.figures import accuracy_plot, attribution_figure, concept_figure

REPORT_FORMAT = "robustlens-report"
REPORT_VERSION = 2
#: The gap (share of examples) between cross-entropy PGD and AutoAttack that the report flags.
CE_GAP_WARNING = 0.05
FILES = {
    "json": "report.json",
    "markdown": "report.md",
    "figure": "attributions.png",
    "plot": "accuracy_vs_eps.png",
    "concepts": "concepts.png",
}


def _plain(value: Any) -> Any:
    """``value`` as JSON: tuples as lists, NaN as None, paths and other objects as strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def recipe_eval_eps(result: ReportResult) -> float | None:
    """The ε of the recipe's evaluation attack, when it used the same norm as the curve."""
    recorded = (result.plan.source.eval_attack or {}).get("init_args") or {}
    eps = recorded.get("eps")
    same_norm = (recorded.get("norm") or "linf") == result.plan.norm
    return float(eps) if isinstance(eps, (int, float)) and same_norm else None


def attack_settings(attack: PGD | AutoAttack, num_classes: int) -> dict[str, Any]:
    """What an attack of the accuracy curve is, for report.json."""
    if isinstance(attack, PGD):
        return {
            "name": attack.name,
            "attack": "PGD",
            "loss": attack.loss,
            "norm": attack.norm,
            "steps": attack.steps,
            "step_size": "2.5 * eps / steps",
            "random_start": attack.random_start,
            "restarts": attack.restarts,
            "seed": attack.seed,
            "seeded": "per example",
        }
    import pyautoattack

    return {
        "name": attack.name,
        "attack": "AutoAttack",
        "version": attack.version,
        "norm": attack.norm,
        "runs": list(sub_attacks(attack.version, num_classes)),
        "implementation": f"pyautoattack {pyautoattack.__version__} (Croce & Hein's code)",
        "seed": attack.seed,
        "seeded": "per example" if attack.seeding == "example" else "per batch (the authors' scheme)",
    }


def accuracy_warnings(eps: list[float], by_attack: dict[str, list[float]]) -> list[str]:
    """Where cross-entropy PGD leaves more than :data:`CE_GAP_WARNING` more examples standing than
    AutoAttack (the standard version first), or without it the strongest other attack."""
    ce = [name for name in by_attack if name.startswith("pgd") and name.endswith("-ce")]
    autoattack = [name for name in ("autoattack", "autoattack-fast") if name in by_attack]
    others = autoattack[:1] or [name for name in by_attack if name not in ce]
    warnings = []
    for reference in ce:
        for i, radius in enumerate(eps):
            if radius == 0 or not others:
                continue
            strongest = min(others, key=lambda name: by_attack[name][i])
            gap = by_attack[reference][i] - by_attack[strongest][i]
            if gap > CE_GAP_WARNING:
                warnings.append(
                    f"at ε = {radius:.4g}, {reference} leaves {by_attack[reference][i]:.3f} of the examples correct and "
                    f"{strongest} {by_attack[strongest][i]:.3f} ({100 * gap:.1f} points fewer)"
                )
    return warnings


def upper_bound_statement(plan: ReportPlan) -> str | None:
    """Why every robust accuracy of the curve is only an upper bound (no AutoAttack ran), or None."""
    if any(isinstance(a, AutoAttack) for a in plan.attacks):
        return None
    made = "made with --fast, " if plan.settings.fast else ""
    return (
        f"{made}no AutoAttack: every robust accuracy here is an upper bound (PGD only; a stronger attack may "
        "break more examples); run the report without --fast (or with --attacks '[..., autoattack]') for a figure to quote"
    )


def report_record(result: ReportResult) -> dict[str, Any]:
    """The contents of ``report.json``."""
    plan, settings = result.plan, result.plan.settings
    source, datamodule = plan.source, plan.datamodule
    curve = result.accuracy
    cls = type(datamodule)
    return _plain(
        {
            "format": REPORT_FORMAT,
            "version": REPORT_VERSION,
            "source": {
                "kind": source.kind,
                "path": str(source.path.resolve()),
                "epoch": source.loaded.epoch,
                "global_step": source.loaded.global_step,
            },
            "model": source.loaded.architecture,
            "data": {
                "name": cls.__name__,
                "class_path": f"{cls.__module__}.{cls.__qualname__}",
                "config": plan.data_config if plan.data_config is not None else "given as an object",
                "config_from": "the recorded recipe" if settings.data is None else "settings",
                "class_names": list(datamodule.class_names),
                "input_shape": list(datamodule.input_shape),
                "split": "test",
                "split_size": plan.test_size,
                "masks": plan.examples.mask is not None,
                "spurious_masks": plan.examples.spurious_mask is not None,
            },
            "settings": {
                "seed": settings.seed,
                "batch_size": settings.batch_size,
                "target": settings.target,
                "device": str(plan.device),
                "examples": len(plan.examples),
                "examples_drawn_by": "datamodule.probe_batch(examples, seed, split='test')",
                "methods": plan.method_options,
                "metrics": plan.metric_options,
                "accuracy_attacks": [attack_settings(a, int(source.loaded.architecture["num_classes"])) for a in plan.attacks],
                "figure_examples": result.figure.indices.tolist(),
                "attack_steps": settings.attack_steps,
                "fast": settings.fast,
                "fast_profile": FAST_PROFILE if settings.fast else None,
            },
            "accuracy": {
                "clean": curve.clean,
                "examples": curve.examples,
                "norm": plan.norm,
                "eps": curve.eps,
                "by_attack": curve.by_attack,
                "accuracy": curve.worst,
                "worst_up_to_eps": curve.worst_up_to_eps,
                "non_increasing": curve.non_increasing,
                "recipe_eval_eps": recipe_eval_eps(result),
                "warnings": accuracy_warnings(curve.eps, curve.by_attack),
                "upper_bounds": upper_bound_statement(plan),
            },
            "metrics": {
                method: {name: {k: v for k, v in vars(cell).items() if v is not None or k == "value"} for name, cell in row.items()}
                for method, row in result.metrics.items()
            },
            "higher_is_better": {name: metric_spec(name).higher_is_better for name in plan.metrics},
            "randomisation_layers": result.randomisation_layers,
            "concepts": concepts_record(result),
            "seconds": {**result.seconds, "total": sum(result.seconds.values())},
            "environment": {
                "torch": str(torch.__version__),
                "threads": torch.get_num_threads(),
                "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            },
            "files": {key: name for key, name in FILES.items() if key != "concepts" or result.concepts is not None},
        }
    )


def _number(value: float | None, style: str = ".3f") -> str:
    return "n/a" if value is None else format(value, style)


def _options(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults"


def _describe_attack(attack: dict[str, Any]) -> str:
    if attack["attack"] == "PGD":
        loss = {"ce": "cross-entropy (an upper bound: a cheap monitor)", "margin": "the margin loss (Carlini–Wagner)",
                "dlr": "the DLR loss (Croce & Hein)"}[attack["loss"]]  # fmt: skip
        return (
            f"PGD on {loss}, {attack['steps']} steps of size {attack['step_size']}, random start seeded "
            f"{attack['seeded']} (seed {attack['seed']}), {attack['restarts']} restart(s)"
        )
    runs = ", ".join(name.upper() for name in attack["runs"])
    return f"AutoAttack, {attack['version']} version ({runs}; {attack['implementation']}), seeded {attack['seeded']}"


def report_markdown(record: dict[str, Any]) -> str:
    """``report.md`` from the contents of ``report.json``."""
    data, settings, accuracy = record["data"], record["settings"], record["accuracy"]
    names = list(accuracy["by_attack"])
    model, source = record["model"], record["source"]
    metrics = list(settings["metrics"])
    lines = [
        f"# Analysis report: {data['name']} classifier ({backbone_label(model['backbone'])})",
        "",
        f"- Model: {source['kind']} `{source['path']}` (epoch {source['epoch']}, step {source['global_step']}).",
        f"- Data: `{data['class_path']}` ({data['config_from']}), test split of {data['split_size']} examples; "
        f"examples drawn with seed {settings['seed']}.",
        f"- Explained class: {settings['target']}. Device: {settings['device']}; torch "
        f"{record['environment']['torch']}; {record['seconds']['total']:.1f} s in all.",
        *([f"- Made with `--fast` (a cheaper profile; its settings are in report.json's `settings.fast_profile`, "
           "options given explicitly kept their values): fewer attribution samples, PGD only in the accuracy curve."]
          if settings.get("fast") else []),
        "",
        "## Accuracy against ε",
        "",
        f"Every attack at every ε under {'L∞' if accuracy['norm'] == 'linf' else 'L2'} (pixels in [0, 1]) on "
        f"{accuracy['examples']} test examples; an example counts as correct when it is classified correctly and the "
        "attack does not break it; ε = 0 is the clean accuracy.",
        "",
        *[f"- `{a['name']}`: {_describe_attack(a)}" for a in settings["accuracy_attacks"]],
        "",
        "| ε | " + " | ".join(names) + " | worst case | worst case over ε' ≤ ε |",
        "|---" * (len(names) + 3) + "|",
    ]
    for i, (eps, worst, up_to) in enumerate(zip(accuracy["eps"], accuracy["accuracy"], accuracy["worst_up_to_eps"])):
        marker = " (recipe's evaluation ε)" if accuracy["recipe_eval_eps"] is not None and math.isclose(
            eps, accuracy["recipe_eval_eps"]
        ) else ""
        cells = " | ".join(_number(accuracy["by_attack"][name][i]) for name in names)
        lines.append(f"| {eps:.4g}{marker} | {cells} | {_number(worst)} | {_number(up_to)} |")
    lines += [
        "",
        "Quote AutoAttack's figure (`autoattack`, the standard version; `autoattack-fast` is an upper bound on it) or "
        "the worst case; a cross-entropy PGD figure (`pgd*-ce`) is an upper bound that overstates robustness wherever "
        "the softmax saturates or the gradients are masked.",
    ]
    if accuracy.get("upper_bounds"):
        lines += ["", f"**Upper bounds only**: {accuracy['upper_bounds'][0].upper()}{accuracy['upper_bounds'][1:]}."]
    if accuracy["warnings"]:
        lines += [
            "",
            "**Warning: cross-entropy PGD overstates robustness here** — " + "; ".join(accuracy["warnings"]) + ". "
            "The cross-entropy's gradient vanishes where the softmax saturates, and masked gradients stall any "
            "gradient attack on it (Croce & Hein 2020; Carlini et al., \"On Evaluating Adversarial Robustness\", 2019): "
            "do not report the cross-entropy figure.",
        ]
    if not accuracy["non_increasing"]:
        lines += [
            "",
            "**Warning:** the worst-case accuracy rises with ε somewhere on this curve: the attacks at the larger ε "
            "missed adversarial examples that a smaller budget found. They have not converged (more "
            "`--attack_steps`, `--attack_restarts`, or AutoAttack) or the gradients are masked (Carlini et al., "
            "\"On Evaluating Adversarial Robustness\", 2019); trust the last column.",
        ]
    lines += ["", f"![accuracy against ε]({FILES['plot']})", "", "## Explanation metrics", ""]
    lines += [
        f"Mean over {settings['examples']} test examples; ↑: higher is better, ↓: lower is better. "
        "`randomisation` is the similarity of the explanation after re-initialising the whole network "
        "(cascading randomisation; per-layer values in report.json): low means the method depends on "
        "what the model learnt.",
        "",
    ]

    def arrow(name: str) -> str:
        better = record["higher_is_better"].get(name)
        return " ↑" if better is True else " ↓" if better is False else ""

    lines.append("| method | " + " | ".join(f"{name}{arrow(name)}" for name in metrics) + " |")
    lines.append("|---" * (len(metrics) + 1) + "|")
    undefined = []
    for method, row in record["metrics"].items():
        lines.append(f"| {method} | " + " | ".join(_number(row[name]["value"], ".3g") for name in metrics) + " |")
        for name in metrics:
            if row[name]["undefined"]:
                undefined.append(f"{method} × {name}: {row[name]['undefined']} of {settings['examples']}")
    if undefined:
        lines += ["", "Examples with an undefined score (left out of the mean): " + "; ".join(undefined) + "."]
    lines += ["", "Settings:", ""]
    lines += [f"- method `{name}`: {_options(options)}" for name, options in settings["methods"].items()]
    lines += [f"- metric `{name}`: {_options(options)}" for name, options in settings["metrics"].items()]
    lines += ["", "## Attributions", "", f"![attributions]({FILES['figure']})"]
    concepts = record.get("concepts")
    if concepts is not None:
        lines += [
            "", "## Concepts (CRP)", "",
            f"Heatmaps conditioned on the {len(concepts['channels'][0])} most relevant channels of `{concepts['layer']}` "
            f"(LRP with zennit's `{concepts['composite']}`; the title gives each channel's share of the layer's relevance).",
            "", f"![concepts]({FILES['concepts']})",
        ]  # fmt: skip
    lines += ["", "## Time", ""]
    lines += ["| part | seconds |", "|---|---|"]
    lines += [f"| {part} | {seconds:.1f} |" for part, seconds in record["seconds"].items()]
    return "\n".join(lines) + "\n"


def concepts_record(result: ReportResult) -> dict[str, Any] | None:
    """The concept figure's numbers (examples, channels and their relevance), or None."""
    data = result.concepts
    if data is None:
        return None
    return {
        "layer": data.layer,
        "composite": data.composite,
        "examples": data.indices.tolist(),
        "explained": data.targets.tolist(),
        "channels": data.channels.tolist(),
        "relevance": data.relevance.tolist(),
        "layer_relevance": data.total.tolist(),
    }


def write_report(result: ReportResult, out_dir: str | Path) -> dict[str, Any]:
    """Write the report files into ``out_dir`` (replacing it); returns the JSON record."""
    out_dir = Path(out_dir)
    plan = result.plan
    record = report_record(result)
    with staged_folder(out_dir, what="report") as staging:
        (staging / FILES["json"]).write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
        (staging / FILES["markdown"]).write_text(report_markdown(record))
        title = f"{record['data']['name']}, {backbone_label(record['model']['backbone'])}: {Path(record['source']['path']).name}"
        explained = "predicted class" if plan.settings.target == "predicted" else "label"
        attribution_figure(
            result.figure, plan.datamodule.class_names, staging / FILES["figure"],
            title=f"{title}; maps Σ_c |Φ_c| of the {explained}",
        )  # fmt: skip
        accuracy_plot(result.accuracy, plan.norm, staging / FILES["plot"], recipe_eval_eps(result), title=title)
        if result.concepts is not None:
            concept_figure(result.concepts, plan.datamodule.class_names, staging / FILES["concepts"], title=title)
    return record
