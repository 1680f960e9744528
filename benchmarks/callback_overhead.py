"""Wall-time overhead of the monitoring callbacks on a recipe's fit (the quickstart's by default).

Runs a recipe (``--recipe``, default ``configs/quickstart.yaml``) with its callbacks (ExplanationMonitor,
RobustnessEvaluator, SanityCheck) and without them (the same recipe with those three removed),
``--runs`` times each, alternating which goes first in each round, every fit in a fresh process
(W&B offline, into a temporary folder). It reports the fit's wall time (``trainer.fit`` only:
no interpreter start, no CLI parsing, no W&B start or finish), the medians, the overhead
median(with) / median(without) − 1, and the time the callbacks report spending themselves
(their ``seconds``), and the fit process's CPU time with and without: both less sensitive to a
shared machine's noise than the difference of two wall times. Then, on the last trained model, what one evaluation of each part costs: the
monitor per attribution method (without panels), the panels, one robustness curve, and the
sanity check per method.

    PYTHONPATH=. python benchmarks/callback_overhead.py              # 3 + 3 fits of 8 epochs
    PYTHONPATH=. python benchmarks/callback_overhead.py --runs 1 --epochs 2   # a quick look
    PYTHONPATH=. python benchmarks/callback_overhead.py --threads 1          # on a busy machine
    PYTHONPATH=. python benchmarks/callback_overhead.py --recipe configs/mnist/fgsm_rs_wong.yaml \
        --max-steps 1000 --runs 1 --threads 1 -- --data.init_args.data_dir=/root/robustlens-data

A composed recipe's callback list (``callbacks: callbacks.yaml``) is read from its file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.timing import median_seconds

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "configs" / "quickstart.yaml"
MONITORS = ("callbacks.ExplanationMonitor", "callbacks.RobustnessEvaluator", "callbacks.SanityCheck")


def _recipes(recipe: Path, folder: Path) -> dict[str, Path]:
    """The recipe as it is ("on") and without the monitoring callbacks ("off")."""
    config = yaml.safe_load(recipe.read_text())
    callbacks = config["trainer"]["callbacks"]
    if isinstance(callbacks, str):  # a composed recipe: the list lives in a file next to it
        callbacks = yaml.safe_load((recipe.parent / callbacks).read_text())
        config["trainer"]["callbacks"] = callbacks
    present = [c["class_path"] for c in callbacks if c["class_path"] in MONITORS]
    if set(present) != set(MONITORS):
        raise SystemExit(f"{recipe} should hold {MONITORS}, holds {present}")
    off = {**config, "trainer": {**config["trainer"], "callbacks": [c for c in callbacks if c["class_path"] not in MONITORS]}}
    paths = {"on": folder / "on.yaml", "off": folder / "off.yaml"}
    paths["on"].write_text(yaml.safe_dump(config, sort_keys=False))
    paths["off"].write_text(yaml.safe_dump(off, sort_keys=False))
    return paths


def _parts(cli: Any) -> dict[str, float]:
    """Seconds of one evaluation of each part, on the trained model (medians of 3)."""
    import torch

    from callbacks import ExplanationMonitor, RobustnessEvaluator, SanityCheck
    from callbacks.attribution_panels import strips
    from callbacks.probe import classifier

    found = {type(c).__name__: c for c in reversed(cli.trainer.callbacks)}  # the first of each class
    monitor: ExplanationMonitor = found["ExplanationMonitor"]
    robust: RobustnessEvaluator = found["RobustnessEvaluator"]
    sanity: SanityCheck = found["SanityCheck"]
    final = [c for c in cli.trainer.callbacks if isinstance(c, RobustnessEvaluator) and c.at_fit_end]
    model = classifier(cli.model)
    parts: dict[str, float] = {}
    for name in monitor.methods:
        single = ExplanationMonitor(
            methods=[name],  # type: ignore[list-item]
            metrics=monitor.metric_names,
            metric_options=monitor.metric_options,
            probe_size=monitor.probe_size,
            panels=0,
        )
        single.methods = {name: monitor.methods[name]}
        single.use_probe(monitor.probe)  # type: ignore[arg-type]
        parts[f"monitor: {name} + metrics"] = median_seconds(lambda s=single: s.evaluate(model))
    with_panels = median_seconds(lambda: monitor.evaluate(model, samples=True, panels=monitor.panels))
    without = median_seconds(lambda: monitor.evaluate(model))
    parts["monitor: panels' x', Φ(x') and table"] = with_panels - without
    scores = monitor.evaluate(model, panels=monitor.panels)
    parts["monitor: rendering the panels"] = median_seconds(lambda: [strips(rows) for rows in scores.panels.values()])
    parts["robustness curve"] = median_seconds(lambda: robust.evaluate(model))
    for evaluator in final:  # once, at the end of fit
        parts[f"end of fit: {', '.join(evaluator.names)}"] = median_seconds(lambda e=evaluator: e.evaluate(model), repeats=1)
    for name, method in sanity.methods.items():
        single_sanity = SanityCheck(methods=[name], probe_size=sanity.probe_size)  # type: ignore[list-item]
        single_sanity.methods = {name: method}
        single_sanity.use_probe(sanity.probe)  # type: ignore[arg-type]
        parts[f"sanity check: {name}"] = median_seconds(lambda s=single_sanity: s.evaluate(model), repeats=1)
    parts["threads"] = float(torch.get_num_threads())
    return parts


def child(recipe: str, length: list[str], out: str, parts: bool, threads: int | None, overrides: list[str]) -> None:
    """One fit in this process; writes its figures as JSON to ``out``."""
    import torch
    import wandb

    import train

    if threads is not None:
        torch.set_num_threads(threads)

    root = tempfile.mkdtemp(prefix="overhead-")
    args = [  # no subcommand: built with run=False, the fit is timed here
        "--config",
        recipe,
        *length,
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={root}",
        f"--trainer.logger.init_args.save_dir={root}",
        *overrides,
    ]
    cli = train.main(args, run=False)
    assert cli is not None
    start, cpu_start = time.perf_counter(), time.process_time()
    cli.trainer.fit(cli.model, cli.datamodule)
    fit_seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start  # this process's CPU time: blind to other jobs' load
    callbacks = {
        (f"{type(c).__name__} ({c.prefix})" if hasattr(c, "prefix") else type(c).__name__): c.seconds
        for c in cli.trainer.callbacks
        if hasattr(c, "seconds") and hasattr(c, "probe")
    }
    result: dict[str, Any] = {
        "fit_seconds": fit_seconds,
        "cpu_seconds": cpu_seconds,
        "callback_seconds": callbacks,
        "val_acc_pgd": float(cli.trainer.callback_metrics.get("val/acc_pgd", torch.tensor(float("nan")))),
    }
    if parts and callbacks:
        result["parts"] = _parts(cli)
    wandb.finish()
    Path(out).write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--recipe", type=Path, default=QUICKSTART, help="the recipe to time (default: the quickstart)")
    parser.add_argument("--max-steps", type=int, default=None, help="train this many steps instead of --epochs epochs")
    parser.add_argument("overrides", nargs="*", help="after --: options passed to train.py, e.g. the data folder")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch intra-op threads (default: torch's, as make quickstart); 1 is steadier on a shared machine",
    )
    parser.add_argument("--child", nargs=3, metavar=("RECIPE", "OUT", "PARTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.max_steps is None:
        length, span = [f"--trainer.max_epochs={args.epochs}"], f"{args.epochs} epochs"
    else:
        length = [f"--trainer.max_steps={args.max_steps}", "--trainer.max_epochs=-1"]
        span = f"{args.max_steps} steps"
    if args.child:
        child(args.child[0], length, args.child[1], args.child[2] == "1", args.threads, args.overrides)
        return

    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONPATH": str(REPO)}
    results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as folder:
        recipes = _recipes(args.recipe.resolve(), Path(folder))
        for round_ in range(args.runs):
            order = ("off", "on") if round_ % 2 == 0 else ("on", "off")
            for mode in order:
                out = Path(folder) / f"{mode}{round_}.json"
                last = round_ == args.runs - 1 and mode == "on"
                command = [sys.executable, __file__, "--epochs", str(args.epochs), "--child", str(recipes[mode]), str(out), "1" if last else "0"]
                if args.max_steps is not None:
                    command += ["--max-steps", str(args.max_steps)]
                if args.threads is not None:
                    command += ["--threads", str(args.threads)]
                command += ["--", *args.overrides]
                subprocess.run(command, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                results[mode].append(json.loads(out.read_text()))
                print(f"round {round_ + 1} {mode:>3}: fit {results[mode][-1]['fit_seconds']:.1f} s", flush=True)

    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    off = [r["fit_seconds"] for r in results["off"]]
    on = [r["fit_seconds"] for r in results["on"]]
    own = [sum(r["callback_seconds"].values()) for r in results["on"]]
    names = sorted(results["on"][0]["callback_seconds"])
    print()
    threads = "" if args.threads is None else f" --threads {args.threads}"
    recipe = args.recipe.resolve().relative_to(REPO)
    length_option = f"--epochs {args.epochs}" if args.max_steps is None else f"--max-steps {args.max_steps}"
    extra = f" -- {' '.join(args.overrides)}" if args.overrides else ""
    print(
        f"# PYTHONPATH=. python benchmarks/callback_overhead.py --recipe {recipe} --runs {args.runs} {length_option}{threads}{extra}"
    )
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {recipe}, {span}, W&B offline")
    print()
    print("| fit | " + " | ".join(f"run {i + 1}" for i in range(args.runs)) + " | median |")
    print("|---|" + "---|" * (args.runs + 1))
    print("| without callbacks, s | " + " | ".join(f"{t:.1f}" for t in off) + f" | {statistics.median(off):.1f} |")
    print("| with callbacks, s | " + " | ".join(f"{t:.1f}" for t in on) + f" | {statistics.median(on):.1f} |")
    for name in names:
        values = [r["callback_seconds"][name] for r in results["on"]]
        print(f"| {name}, s (own) | " + " | ".join(f"{t:.1f}" for t in values) + f" | {statistics.median(values):.1f} |")
    shares = [o / t for o, t in zip(own, on)]
    print("| callbacks' own time / fit | " + " | ".join(f"{100 * s:.1f} %" for s in shares) + f" | {100 * statistics.median(shares):.1f} % |")
    print()
    print(f"overhead, median(with) / median(without) - 1: {100 * (statistics.median(on) / statistics.median(off) - 1):.1f} %")
    cpu_off = [r["cpu_seconds"] for r in results["off"]]
    cpu_on = [r["cpu_seconds"] for r in results["on"]]
    print(
        f"CPU time of the fit process, median without / with: {statistics.median(cpu_off):.1f} / "
        f"{statistics.median(cpu_on):.1f} s, overhead {100 * (statistics.median(cpu_on) / statistics.median(cpu_off) - 1):.1f} %"
    )
    print(
        "val/acc_pgd at the end, without / with: "
        + ", ".join(f"{a['val_acc_pgd']:.4f}/{b['val_acc_pgd']:.4f}" for a, b in zip(results["off"], results["on"]))
    )
    parts = results["on"][-1].get("parts", {})
    if parts:
        threads = int(parts.pop("threads"))
        print()
        print(f"| one evaluation, trained model ({threads} threads) | s |")
        print("|---|---|")
        for name, seconds in parts.items():
            print(f"| {name} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
