"""How long ``make quickstart`` takes after the install, and what its end-of-fit AutoAttack adds.

Runs the whole command ``train.py fit --config configs/quickstart.yaml`` (interpreter start, CLI,
W&B offline, the fit with its callbacks, the final printout) in a fresh process, as shipped and
without the end-of-fit ``RobustnessEvaluator`` (the recipe with that callback removed),
alternating which goes first in each round. Reports wall time and the child's CPU time
(user + sys: less sensitive to other jobs on a shared machine, though busy-waiting threads
inflate it under load), the medians, and the AutoAttack line the run printed.

    PYTHONPATH=. python benchmarks/quickstart_time.py --runs 2
    PYTHONPATH=. python benchmarks/quickstart_time.py --runs 1 --only shipped

Run by hand, never in CI; the load average is printed because it stretches every wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "configs" / "quickstart.yaml"


def _without_final_autoattack(folder: Path) -> Path:
    config = yaml.safe_load(QUICKSTART.read_text())
    callbacks = config["trainer"]["callbacks"]
    kept = [c for c in callbacks if not (c["class_path"] == "callbacks.RobustnessEvaluator" and (c.get("init_args") or {}).get("at_fit_end"))]
    if len(kept) != len(callbacks) - 1:
        raise SystemExit("the quickstart recipe should hold one end-of-fit RobustnessEvaluator")
    path = folder / "without_final_autoattack.yaml"
    path.write_text(yaml.safe_dump({**config, "trainer": {**config["trainer"], "callbacks": kept}}, sort_keys=False))
    return path


def _run(recipe: Path, root: Path) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds of the child, and its AutoAttack line (if any)."""
    env = dict(os.environ, WANDB_MODE="offline")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "fit", "--config", str(recipe), "--trainer.enable_progress_bar=false",
         f"--trainer.default_root_dir={root}", f"--trainer.logger.init_args.save_dir={root}"],
        cwd=REPO, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    line = next((s.strip() for s in done.stdout.splitlines() if "robust accuracy of the last weights" in s), "")
    return wall, cpu, line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--only", choices=["shipped", "without"], default=None)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="quickstart-time-"))
    recipes = {"shipped": QUICKSTART, "without": _without_final_autoattack(folder)}
    if args.only:
        recipes = {args.only: recipes[args.only]}
    results: dict[str, list[tuple[float, float, str]]] = {name: [] for name in recipes}
    print(f"# PYTHONPATH=. python benchmarks/{' '.join(['quickstart_time.py', *sys.argv[1:]])}")
    print(f"# load average before: {os.getloadavg()[0]:.1f}", flush=True)
    for round_ in range(args.runs):
        order = list(recipes) if round_ % 2 == 0 else list(reversed(recipes))
        for name in order:
            results[name].append(_run(recipes[name], folder / f"{name}{round_}"))
            wall, cpu, line = results[name][-1]
            print(f"round {round_ + 1}, {name}: {wall:.1f} s wall, {cpu:.1f} s CPU  {line}", flush=True)
    print()
    print("| quickstart | wall s (median) | CPU s (median) | runs |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        label = "as shipped (end-of-fit AutoAttack)" if name == "shipped" else "without the end-of-fit AutoAttack"
        print(f"| {label} | {statistics.median(r[0] for r in runs):.1f} | {statistics.median(r[1] for r in runs):.1f} | {len(runs)} |")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
