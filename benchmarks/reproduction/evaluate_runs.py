"""Evaluate every finished reproduction run with the published protocols, one JSON per run.

For each ``<runs-dir>/<dataset>/<row>/seed<k>/checkpoints/last.ckpt`` (the authors evaluate
their final model), on the run's own dataset (its recorded datamodule, ``--data-dir`` in place
of the recorded folder):

- **clean accuracy** on the whole test split (10 000 images);
- **PGD-50 × 10 restarts** on the cross-entropy, step 0.01, at the recipe's ε (Wong et al.'s
  ``evaluate_mnist.py``; an upper bound on robust accuracy) and **AutoAttack, standard version**
  (Croce & Hein, ICML 2020: APGD-CE, APGD-T, FAB-T, Square, the authors' code and settings,
  their per-batch seeding) on the first ``--aa-examples`` test images (1 000; the figure to
  compare with the published ones); their per-example worst case;
- **explanation robustness under Chen et al.'s top-k attack** (NeurIPS 2019, the protocol of
  :func:`attacks.chen_protocol`: integrated gradients from a zero baseline with 100 right-Riemann
  points, 100 signed steps of 0.01, the iterate kept by Kendall's τ, top-k intersection, Kendall's
  τ and Spearman's ρ at it) on the first ``--expl-examples`` test images; on MNIST also with
  k_attack = 100 beside Chen's 200 (with 200, IG's top set holds every nonzero pixel of many
  digits and the attack has no gradient to follow: ``benchmarks/topk_attack_rule.py``);
- **max-sensitivity** (Yeh et al. 2019, Captum's relative form) and **deletion AUC** (Petsiuk et
  al. 2018) of saliency and of that IG, and the **randomisation check** (Adebayo et al. 2018:
  Spearman's ρ of |saliency| between the trained and the fully re-initialised model);
- the wall time of each part.

    PYTHONPATH=. python benchmarks/reproduction/evaluate_runs.py --data-dir ~/robustlens-data
    PYTHONPATH=. python benchmarks/reproduction/evaluate_runs.py --data-dir ~/robustlens-data \\
        --runs-dir /elsewhere/runs --rows mnist/fgsm_rs_wong --threads 1

writes ``benchmarks/reproduction/evaluations/<dataset>/<row>/seed<k>.json`` (kept: a run already
evaluated is skipped unless ``--overwrite``); ``render_table.py`` turns them into the table.
Run by hand, never in CI.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from attacks import PGD, AutoAttack, chen_protocol
from attributions import build_attribution
from evaluation import randomisation_check, robust_correctness
from metrics import compute_metrics
from report import ReportSettings, plan_report

HERE = Path(__file__).resolve().parent
TOPK_METRICS = ("topk_intersection@topk_attack", "kendall@topk_attack", "spearman@topk_attack")
QUALITY_METRICS = ("max_sensitivity", "deletion_auc")
DATASETS = {"datamodules.MNIST": "mnist", "datamodules.FashionMNIST": "fashion_mnist"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder holding MNIST/ and FashionMNIST/ (torchvision's layout)")
    parser.add_argument("--runs-dir", default=str(HERE / "runs"), help="where the runs' folders are")
    parser.add_argument("--out-dir", default=str(HERE / "evaluations"), help="where the JSON files go")
    parser.add_argument("--rows", nargs="*", default=None, help="<dataset>/<row> to evaluate (default: every finished run)")
    parser.add_argument("--aa-examples", type=int, default=1000, help="test images under PGD-50×10 and AutoAttack")
    parser.add_argument("--expl-examples", type=int, default=100, help="test images of the explanation metrics")
    parser.add_argument("--skip-autoattack", action="store_true", help="PGD-50×10 only (a quick look, not for the table)")
    parser.add_argument("--seeds", nargs="*", default=None, help="seed folders to evaluate, e.g. seed0 (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--overwrite", action="store_true", help="evaluate runs already evaluated again")
    return parser.parse_args(argv)


def finished_runs(runs_dir: Path, rows: list[str] | None, seeds: list[str] | None = None) -> list[Path]:
    """Seed folders holding a last.ckpt (of the rows and seeds asked for)."""
    found = []
    for ckpt in sorted(runs_dir.glob("*/*/seed*/checkpoints/last.ckpt")):
        seed_dir = ckpt.parents[1]
        row = f"{seed_dir.parents[1].name}/{seed_dir.parent.name}"
        if rows is not None and row not in rows:
            continue
        if seeds is not None and seed_dir.name not in seeds:
            continue
        found.append(seed_dir)
    return found


def _clean_accuracy(model: torch.nn.Module, loader: Any, device: torch.device) -> tuple[int, int]:
    correct = total = 0
    with torch.no_grad():
        for x, y, *_ in loader:
            correct += int((model(x.to(device)).argmax(1) == y.to(device)).sum())
            total += int(y.shape[0])
    return correct, total


def _mean(values: torch.Tensor) -> dict[str, Any]:
    """Mean over the defined values (NaN: skipped example, e.g. misclassified), with counts."""
    values = values.detach().double().flatten().cpu()
    defined = values[~torch.isnan(values)]
    return {
        "mean": float(defined.mean()) if len(defined) else None,
        "std": float(defined.std()) if len(defined) > 1 else None,
        "n": int(len(defined)),
        "undefined": int(len(values) - len(defined)),
    }


def evaluate(seed_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    config = yaml.safe_load((seed_dir / "config.yaml").read_text())
    data = config["data"]
    data = {"class_path": data["class_path"], "init_args": {**data.get("init_args", {}), "data_dir": args.data_dir}}
    dataset = DATASETS[data["class_path"]]
    eps = float(config["model"]["eval_attack"]["init_args"]["eps"])
    ckpt = seed_dir / "checkpoints" / "last.ckpt"
    settings = ReportSettings(
        ckpt_path=str(ckpt), out_dir="/nonexistent/unused", data=data, accuracy_examples=args.aa_examples,
        methods=["saliency"], metrics=["deletion_auc"], num_examples=1, figure_examples=1, progress=False,
    )  # fmt: skip
    plan = plan_report(settings)
    model, device = plan.model, plan.device
    record: dict[str, Any] = {
        "run": str(seed_dir.relative_to(seed_dir.parents[2])),
        "checkpoint": "checkpoints/last.ckpt",
        "dataset": dataset,
        "eps": eps,
        "command": "PYTHONPATH=. python benchmarks/reproduction/" + shlex.join(["evaluate_runs.py", *sys.argv[1:]]),
        "environment": f"torch {torch.__version__}, {platform.machine()}, threads={torch.get_num_threads()}, device={device}",
        "load_average_before": os.getloadavg()[0],
        "seconds": {},
    }

    start = time.perf_counter()
    plan.datamodule.setup("test")
    correct, total = _clean_accuracy(model, plan.datamodule.test_dataloader(), device)
    record["clean"] = {"accuracy": correct / total, "correct": correct, "examples": total}
    record["seconds"]["clean"] = time.perf_counter() - start

    x, y = plan.accuracy_examples.x.to(device), plan.accuracy_examples.y.to(device)
    attacks: dict[str, Any] = {"pgd50x10": PGD(eps=eps, step_size=0.01, steps=50, restarts=10, seed=0)}
    if not args.skip_autoattack:
        attacks["autoattack"] = AutoAttack(eps=eps, version="standard", seeding="batch", seed=0)
    standing: dict[str, torch.Tensor] = {}
    for name, attack in attacks.items():
        start = time.perf_counter()
        result = robust_correctness(model, x, y, [attack], eps=[eps], batch_size=250)
        record["seconds"][name] = time.perf_counter() - start
        standing[name] = result.correct[0, 0]
        record.setdefault("robust", {})[name] = {"accuracy": float(standing[name].double().mean()), "examples": len(y)}
        record["robust_clean_on_these"] = float(result.clean.double().mean())
    if len(standing) > 1:
        worst = torch.stack(list(standing.values())).all(0)
        record["robust"]["worst"] = {"accuracy": float(worst.double().mean()), "examples": len(y)}

    n = min(args.expl_examples, len(y))
    xe, ye = x[:n], y[:n]
    protocol = chen_protocol(dataset)
    ig = protocol.integrated_gradients()
    k_attacks = [protocol.k_attack] + ([100] if protocol.k_attack != 100 else [])
    record["topk_attack"] = {}
    for k_attack in k_attacks:
        options = {**protocol.metric_options(select_as_published=True), "k_attack": k_attack}
        start = time.perf_counter()
        scores = compute_metrics(TOPK_METRICS, model, xe, ye, ig, options={m: options for m in TOPK_METRICS})
        record["seconds"][f"topk_attack_k{k_attack}"] = time.perf_counter() - start
        record["topk_attack"][f"k_attack={k_attack}"] = {
            "options": options,
            **{name.split("@")[0]: _mean(scores[name]) for name in TOPK_METRICS},
        }
    record["quality"] = {}
    for method_name, method in (("saliency", build_attribution("saliency")), ("integrated_gradients", ig)):
        start = time.perf_counter()
        scores = compute_metrics(QUALITY_METRICS, model, xe, ye, method, example_ids=torch.arange(n))
        record["seconds"][f"quality_{method_name}"] = time.perf_counter() - start
        record["quality"][method_name] = {name: _mean(scores[name]) for name in QUALITY_METRICS}
    start = time.perf_counter()
    table = randomisation_check(model, {"saliency": build_attribution("saliency")}, xe, ye, similarities=["spearman"], seed=0)
    cell = table.compute().cells["saliency"]["spearman"]
    record["seconds"]["randomisation"] = time.perf_counter() - start
    record["randomisation"] = {"saliency_spearman_fully_randomised": cell.value, "n": cell.count, "undefined": cell.undefined}
    record["expl_examples"] = n
    record["load_average_after"] = os.getloadavg()[0]
    return record


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    runs_dir, out_dir = Path(args.runs_dir), Path(args.out_dir)
    runs = finished_runs(runs_dir, args.rows, args.seeds)
    if not runs:
        raise SystemExit(f"no run with checkpoints/last.ckpt under {runs_dir} (rows: {args.rows})")
    for seed_dir in runs:
        row = f"{seed_dir.parents[1].name}/{seed_dir.parent.name}"
        out = out_dir / row / f"{seed_dir.name}.json"
        if out.exists() and not args.overwrite:
            print(f"{row}/{seed_dir.name}: evaluated already ({out})", flush=True)
            continue
        print(f"{row}/{seed_dir.name}: evaluating ...", flush=True)
        record = evaluate(seed_dir, args)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_suffix(".json.partial")
        partial.write_text(json.dumps(record, indent=1, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v) + "\n")
        partial.replace(out)
        robust = ", ".join(f"{k} {100 * v['accuracy']:.1f} %" for k, v in record.get("robust", {}).items())
        print(f"  clean {100 * record['clean']['accuracy']:.2f} %; {robust}; {sum(record['seconds'].values()):.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
