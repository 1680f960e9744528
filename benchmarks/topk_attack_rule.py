"""How much the top-k attack's rule changes its figures: the older rule against the references'.

Trains one row of the results table (``benchmarks/results_table.py``'s settings: ``small_cnn``
width 16, hidden 128, 600 steps of batch 50 on MNIST, one recipe, seed 0; the weights are cached
in ``benchmarks/_runs``), then attacks the explanations of the table's 64 probe images with

- **old**: the rule this project used before: an example stops at its first label flip, the
  iterate with the lowest top-k ∩ is kept for both figures, k = 100 for attack and score,
  misclassified examples attacked (explaining the predicted class);
- **advance**: the iterate always advances (Ghorbani et al., Chen et al.), otherwise as old;
- **own criterion**: as advance, each figure at the iterate its own similarity selects;
- **skip misclassified**: as own criterion, explaining the true label with misclassified
  examples skipped (what ``results_table.py`` now runs, k_attack = k_score = 100);
- **Chen et al.**: as skip misclassified, with their MNIST config's k_attack 200, k_score 100
  (:func:`attacks.chen_protocol`).

The top-k ∩ (k = 100) and Kendall τ means are over the examples each variant attacks; "stopped"
counts the examples the old rule stopped early (a label flip within the steps), "flipped" those
whose label flipped somewhere along the full trajectory, "skipped" the misclassified ones, and
"unmoved" the attacked ones for which no iterate improved on x under either criterion.

    PYTHONPATH=. python benchmarks/topk_attack_rule.py --data-dir <writable copy of MNIST> --method saliency
    PYTHONPATH=. python benchmarks/topk_attack_rule.py --data-dir ... --method integrated_gradients --ig-steps 16

Run by hand, never in CI; results are appended to ``benchmarks/topk_attack_rule.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "topk_attack_rule.json"
CACHE = ROOT / "benchmarks" / "_runs" / "topk_attack_rule"


def trained_model(data_dir: Path, recipe: str) -> tuple[torch.nn.Module, Any]:
    """The table's MNIST row for ``recipe`` (seed 0), trained once and cached; and its datamodule."""
    import train
    from benchmarks import results_table

    settings = results_table.parse_args(["--data-dir", str(data_dir)])
    run_dir = CACHE / f"mnist-{recipe}-s0"
    cli = train.main(results_table.cli_args("mnist", recipe, 0, settings, run_dir), run=False)
    assert cli is not None
    weights = run_dir / "model.pt"
    if weights.exists():
        cli.model.model.load_state_dict(torch.load(weights, weights_only=True))
    else:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        weights.parent.mkdir(parents=True, exist_ok=True)
        torch.save(cli.model.model.state_dict(), weights)
    cli.datamodule.prepare_data()
    return cli.model.model.eval(), cli.datamodule


def run(args: argparse.Namespace) -> dict[str, Any]:
    from attacks import TopKExplanationAttack, chen_protocol
    from attributions import build_attribution, pixel_map
    from common.similarity import kendall, topk_intersection

    model, data = trained_model(args.data_dir, args.recipe)
    probe = data.probe_batch(args.examples, seed=2, split="test")  # 64: the results table's explanation probe
    x, y = probe.x, probe.y
    if args.method == "saliency":
        method = build_attribution("saliency")
    else:
        method = build_attribution("integrated_gradients", steps=args.ig_steps)
    protocol = chen_protocol("mnist")
    steps = protocol.steps if args.steps is None else args.steps
    step_size = protocol.step_size if args.step_size is None else args.step_size
    common = {"eps": protocol.eps, "steps": steps, "step_size": step_size}
    with torch.no_grad():
        predicted = model(x).argmax(1)
    misclassified = int((predicted != y).sum())
    clean = pixel_map(method(model, x, predicted))

    def figures(x_adv: torch.Tensor, rows: torch.Tensor) -> dict[str, float]:
        maps = pixel_map(method(model, x_adv[rows], predicted[rows]))
        return {
            "topk": float(topk_intersection(clean[rows], maps, 100).mean()),
            "kendall": float(kendall(clean[rows], maps).nanmean()),
        }

    everyone = torch.arange(len(y))
    results: dict[str, Any] = {}
    start = time.perf_counter()
    old = TopKExplanationAttack(**common, k=100, stop_at_label_flip=True).attack(model, x, method)
    results["old"] = {**figures(old.x_adv, everyone), "stopped": int((old.first_flip > 0).sum()), "examples": len(y)}
    seconds_old = time.perf_counter() - start
    new = TopKExplanationAttack(**common, k=100, criteria=("topk_intersection", "kendall")).attack(model, x, method)
    results["advance"] = {
        **figures(new.selections["topk_intersection"].x_adv, everyone),
        "flipped": int((new.first_flip > 0).sum()),
        "examples": len(y),
    }
    results["own criterion"] = {
        "topk": float(new.selections["topk_intersection"].score.mean()),
        "kendall": float(new.selections["kendall"].score.nanmean()),
        "examples": len(y),
    }
    for name, k_attack in (("skip misclassified", protocol.k_score), ("Chen et al.", protocol.k_attack)):
        result = TopKExplanationAttack(
            **common, k_attack=k_attack, k_score=protocol.k_score, criteria=("topk_intersection", "kendall")
        ).attack(model, x, method, y)
        unmoved = (result.selections["topk_intersection"].step == 0) & (result.selections["kendall"].step == 0)
        results[name] = {
            "k_attack": k_attack,
            "topk": float(result.selections["topk_intersection"].score.nanmean()),
            "kendall": float(result.selections["kendall"].score.nanmean()),
            "skipped": int((~result.attacked).sum()),
            "unmoved": int((unmoved & result.attacked).sum()),
            "examples": int(result.attacked.sum()),
        }
    return {
        "recipe": args.recipe,
        "method": args.method if args.method == "saliency" else f"integrated_gradients ({args.ig_steps} steps)",
        "attack": {**common, "criteria": "see the module docstring"},
        "examples": len(y),
        "clean_accuracy_on_probe": 1 - misclassified / len(y),
        "results": results,
        "seconds_old_attack": seconds_old,
        "command": "PYTHONPATH=. python benchmarks/topk_attack_rule.py " + shlex.join(sys.argv[1:]),
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="a writable folder holding MNIST/raw")
    parser.add_argument("--recipe", default="erm", help="the results table's recipe to train (default erm)")
    parser.add_argument("--method", choices=("saliency", "integrated_gradients"), default="saliency")
    parser.add_argument("--ig-steps", type=int, default=16, help="points of integrated gradients (the table's 16)")
    parser.add_argument("--steps", type=int, default=None, help="attack steps (None: Chen et al.'s 100)")
    parser.add_argument("--step-size", type=float, default=None, help="attack step (None: Chen et al.'s 0.01)")
    parser.add_argument("--examples", type=int, default=64, help="test images attacked (the table's probe: 64)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    record = run(args)
    print(json.dumps(record, indent=1))
    records = json.loads(OUT.read_text()) if OUT.exists() else []
    OUT.write_text(json.dumps(records + [record], indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
