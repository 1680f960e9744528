"""AutoAttack accuracy of the leaderboard training methods on synthetic shapes, at equal steps.

Each method trains the quickstart model (small_cnn, width 16, hidden 128; 1×28×28 synthetic
shapes, 4 classes, 4 000 training images) for the same 504 steps (8 epochs of 63 batches of 64)
through the project's command line, from its recipe in ``configs/synthetic/`` as written
(L∞ ε = 0.1, 7 attack steps of 0.025, ε ramped up over the first epoch, over three for MART,
Adam lr 2e-3):

- ``pgd_at``      PGD-AT (``pgd_at.yaml``)
- ``mart``        MART, β = 6 (``mart.yaml``)
- ``trades_awp``  TRADES-AWP, β = 6, γ = 5e-3 (``trades_awp.yaml``)
- ``pgd_at_ema``  PGD-AT with an EMA of the weights, d = 0.99 from step 63 (``pgd_at_ema.yaml``)

The weights after the last step (the average, for ``pgd_at_ema``) are evaluated on the whole test
split (500 images): clean accuracy, the recipe's PGD-10 monitor, and AutoAttack (standard
version: APGD-CE, APGD-T, FAB-T, Square; L∞, ε = 0.1), the authors' code through
:class:`attacks.AutoAttack` with their per-batch seeding. With 4 classes the targeted attacks use
the 3 possible target classes (the authors' 9 need 10 classes).

    PYTHONPATH=. python benchmarks/leaderboard_methods.py --methods pgd_at mart trades_awp pgd_at_ema
    PYTHONPATH=. python benchmarks/leaderboard_methods.py --methods mart --until-epoch 4   # part of a fit
    PYTHONPATH=. python benchmarks/leaderboard_methods.py --render-only

On a shared machine a run can be cut into commands of a few minutes: ``--until-epoch E`` trains
up to epoch E and stops, and the next command resumes from the run's ``last.ckpt`` (an exact
resume) until the 8 epochs are done; ``--parts P`` evaluates AutoAttack on P consecutive slices
of the test split, one slice per command, keeping each slice's count in the run folder (each
image's result does not depend on the others'). Each method's record is appended to
``benchmarks/leaderboard_methods.json`` when all is done (a rerun skips what is there). Run by
hand, never in CI.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "leaderboard_methods.json"
RUNS = ROOT / "benchmarks" / "_runs" / "leaderboard_methods"  # ignored by git
METHODS = {
    "pgd_at": "PGD-AT",
    "mart": "MART (β = 6)",
    "trades_awp": "TRADES-AWP (β = 6, γ = 5e-3)",
    "pgd_at_ema": "PGD-AT + EMA (d = 0.99)",
}
EPS = 0.1


# ---------------------------------------------------------------------------------------------
# The evaluation: the one place that computes the AutoAttack figure, through robustlens's
# attacks.AutoAttack with the authors' per-batch seeding (tested to equal the authors'
# run_standard_evaluation on the same batch, so the recorded figures stay comparable).


def autoattack_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int = 0) -> int:
    """How many of (x, y) ``model`` (inputs in [0, 1], eval mode) classifies correctly under
    standard AutoAttack, L∞ ``eps``: one call on all of (x, y), the same as the authors'
    ``run_standard_evaluation`` with a batch of 250 when there are at most 250 examples (the
    recorded figures: 500 test images in ``--parts 2``)."""
    from attacks import AutoAttack

    x_adv = AutoAttack(eps=eps, norm="linf", version="standard", seeding="batch", seed=seed)(model, x, y)
    with torch.no_grad():
        return int((model(x_adv).argmax(1) == y).sum())


# ---------------------------------------------------------------------------------------------


EPOCHS = 8


def run_dir(method: str, seed: int) -> Path:
    return RUNS / f"{method}-s{seed}"


def train_method(method: str, seed: int, until_epoch: int) -> bool:
    """Fit the method's recipe through ``train.main`` up to ``until_epoch`` epochs, resuming from
    the run's last checkpoint; after the last epoch save the classifier (the average, with EMA)
    to ``final.pt``. Returns whether the fit is complete."""
    import train

    folder = run_dir(method, seed)
    final = folder / "final.pt"
    if final.exists():
        return True
    args = [
        "--config", f"configs/synthetic/{method}.yaml",
        f"--seed_everything={seed}",
        f"--trainer.max_epochs={min(until_epoch, EPOCHS)}",
        "--trainer.accelerator=cpu",
        "--trainer.logger=pytorch_lightning.loggers.CSVLogger",
        f"--trainer.logger.init_args.save_dir={folder}",
        "--trainer.logger.init_args.version=0",
        f"--trainer.default_root_dir={folder}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]
    last = folder / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    cli = train.main(args, run=False)
    assert cli is not None
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=str(last) if last.exists() else None)
    log = folder / "train_seconds.json"
    spent = json.loads(log.read_text()) if log.exists() else []
    log.write_text(json.dumps([*spent, time.perf_counter() - start]))
    if cli.trainer.current_epoch < EPOCHS:
        return False
    assert cli.trainer.global_step == EPOCHS * 63, cli.trainer.global_step
    torch.save({"state_dict": cli.model.model.state_dict(), "command": "python train.py fit " + shlex.join(args)}, final)
    return True


def trained_model(method: str, seed: int) -> tuple[nn.Module, str]:
    """The classifier saved after the last step, and the command that trained it."""
    from lightning_modules import build_model

    saved = torch.load(run_dir(method, seed) / "final.pt", weights_only=True)
    model = build_model("small_cnn", 4, (1, 28, 28), (0.5,), (0.25,), backbone_kwargs={"width": 16, "hidden": 128})
    model.load_state_dict(saved["state_dict"])
    return model.eval(), saved["command"]


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(1) == y).float().mean())


def pgd10_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The recipes' monitor: PGD-10, step 0.02, seeded random start (an upper bound)."""
    from attacks import PGD

    x_adv = PGD(eps=EPS, step_size=0.02, steps=10, seed=0)(model, x, y)
    return accuracy(model, x_adv, y)


def evaluate_method(method: str, seed: int, parts: int) -> dict[str, Any] | None:
    """AutoAttack on the next slice of the test split not evaluated yet; the record once all are."""
    from datamodules import SyntheticShapes

    model, command = trained_model(method, seed)
    data = SyntheticShapes(num_classes=4, train_size=4000, val_size=500, test_size=500, seed=0)
    data.setup("test")
    test = data.probe_batch(len(data.split_dataset("test")), seed=0, split="test")
    folder = run_dir(method, seed)
    counts_file = folder / f"autoattack_{parts}_parts.json"
    counts = json.loads(counts_file.read_text()) if counts_file.exists() else {}
    for part, index in enumerate(torch.tensor_split(torch.arange(len(test.y)), parts)):
        if str(part) in counts:
            continue
        counts[str(part)] = autoattack_correct(model, test.x[index], test.y[index], EPS)
        counts_file.write_text(json.dumps(counts))
        if len(counts) < parts:
            print(f"{method} seed {seed}: AutoAttack part {part + 1} of {parts} done", flush=True)
            return None
    robust = sum(counts.values()) / len(test.y)
    return {
        "method": method,
        "seed": seed,
        "command": command,
        "steps": EPOCHS * 63,
        "test_size": len(test.y),
        "clean_accuracy": accuracy(model, test.x, test.y),
        "pgd10_accuracy": pgd10_accuracy(model, test.x, test.y),
        "autoattack_accuracy": robust,
        "train_seconds": sum(json.loads((folder / "train_seconds.json").read_text())),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def load() -> list[dict[str, Any]]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else []


def render(records: list[dict[str, Any]]) -> str:
    lines = [
        "| method | seed | clean | PGD-10 (upper bound) | AutoAttack | train s |",
        "|---|---|---|---|---|---|",
    ]
    order = {m: i for i, m in enumerate(METHODS)}
    for r in sorted(records, key=lambda r: (order.get(r["method"], 99), r["seed"])):
        lines.append(
            f"| {METHODS.get(r['method'], r['method'])} | {r['seed']} | {100 * r['clean_accuracy']:.1f} % | "
            f"{100 * r['pgd10_accuracy']:.1f} % | **{100 * r['autoattack_accuracy']:.1f} %** | "
            f"{r['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--until-epoch", type=int, default=EPOCHS, help="train up to this epoch and stop (resumable)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--parts", type=int, default=1, help="evaluate AutoAttack in this many commands")
    parser.add_argument("--render-only", action="store_true", help="print the table of the recorded results")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"command: PYTHONPATH=. python {shlex.join([sys.argv[0], *sys.argv[1:]])}", flush=True)
    records = load()
    if not args.render_only:
        for seed in args.seeds:
            for method in args.methods:
                if any(r["method"] == method and r["seed"] == seed for r in records):
                    print(f"{method} seed {seed}: recorded already", flush=True)
                    continue
                if not train_method(method, seed, args.until_epoch):
                    print(f"{method} seed {seed}: trained up to epoch {args.until_epoch}", flush=True)
                    continue
                record = evaluate_method(method, seed, args.parts)
                if record is None:
                    continue
                records.append(record)
                RESULTS.write_text(json.dumps(records, indent=1) + "\n")
                print(render([records[-1]]), flush=True)
    print(render(records))


if __name__ == "__main__":
    main()
