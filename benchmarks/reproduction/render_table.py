"""Render the reproduction table from the committed raw results (no model is run).

Reads ``evaluations/<dataset>/<row>/seed<k>.json`` (``evaluate_runs.py``), the training wall
times in ``train_wall_times.jsonl`` and the published anchors below, and prints one Markdown
table per dataset: our mean ± standard deviation over seeds beside the published figure, and
whether it reproduces (within 1 point of clean accuracy and 2 points of AutoAttack accuracy).

    PYTHONPATH=. python benchmarks/reproduction/render_table.py > benchmarks/reproduction/TABLE.md
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.results_table import mean_std_cell

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Anchor:
    """A published figure set (percentages; None where the source gives none)."""

    source: str
    clean: float | None = None
    pgd: float | None = None
    autoattack: float | None = None


#: Published anchors per row. Wong et al.'s FGSM-RS and Madry et al.'s PGD-AT: AutoAttack's
#: table (Croce & Hein 2020), whose PGD column is each paper's own PGD evaluation.
ANCHORS: dict[str, Anchor] = {
    "mnist/fgsm_rs_wong": Anchor("Wong et al. 2020; AutoAttack's table", 98.50, 88.77, 82.93),
    "mnist/pgd_at_madry": Anchor("Madry et al. 2018 (their network); AutoAttack's table", 98.53, 89.62, 88.50),
    "mnist/trades_zhang": Anchor("Zhang et al. 2019; AutoAttack's table", 99.48, None, 92.81),
    "fashion_mnist/fgsm_rs_wong": Anchor("none published (Wong et al. report MNIST and CIFAR only)"),
}


def _fmt(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    """Mean ± standard deviation over seeds (the mean alone for one seed; "—" for none)."""
    return mean_std_cell(values, scale, digits)


def _verdict(ours_clean: list[float], ours_aa: list[float], anchor: Anchor) -> str:
    if anchor.clean is None or anchor.autoattack is None or not ours_aa:
        return "no anchor" if anchor.clean is None else "not evaluated"
    clean_gap = 100 * statistics.fmean(ours_clean) - anchor.clean
    aa_gap = 100 * statistics.fmean(ours_aa) - anchor.autoattack
    ok = abs(clean_gap) <= 1.0 and abs(aa_gap) <= 2.0
    return f"{'yes' if ok else 'no'} (clean {clean_gap:+.1f}, AA {aa_gap:+.1f})"


def load(root: Path = HERE) -> tuple[dict[str, list[dict]], dict[str, list[float]]]:
    records: dict[str, list[dict]] = {}
    for path in sorted((root / "evaluations").glob("*/*/seed*.json")):
        records.setdefault(f"{path.parents[1].name}/{path.parent.name}", []).append(json.loads(path.read_text()))
    times: dict[str, list[float]] = {}
    wall = root / "train_wall_times.jsonl"
    if wall.exists():
        for line in wall.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("exit") == 0:
                times.setdefault(entry["row"], []).append(entry["seconds"])
    return records, times


def render(records: dict[str, list[dict]], times: dict[str, list[float]]) -> str:
    out: list[str] = []
    for dataset in sorted({row.split("/")[0] for row in records}):
        rows = [row for row in records if row.startswith(dataset + "/")]
        eps = records[rows[0]][0]["eps"]
        out.append(f"### {dataset} (L∞ ε = {eps:g})\n")
        out.append(
            "| row | seeds | clean % (10 000) | CE PGD-50×10 % (upper bound) | AutoAttack % | published clean / PGD / AA % | reproduced? "
            "| train min / seed | eval min / seed |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|")
        for row in sorted(rows):
            runs = records[row]
            clean = [r["clean"]["accuracy"] for r in runs]
            pgd = [r["robust"]["pgd50x10"]["accuracy"] for r in runs if "pgd50x10" in r.get("robust", {})]
            aa = [r["robust"]["autoattack"]["accuracy"] for r in runs if "autoattack" in r.get("robust", {})]
            n_aa = sorted({r["robust"]["autoattack"]["examples"] for r in runs if "autoattack" in r.get("robust", {})})
            anchor = ANCHORS.get(row, Anchor("—"))
            published = " / ".join("—" if v is None else f"{v:.2f}" for v in (anchor.clean, anchor.pgd, anchor.autoattack))
            train = [t / 60 for t in times.get(row, [])]
            evaluation = [sum(r["seconds"].values()) / 60 for r in runs]
            out.append(
                f"| {row} | {len(runs)} | {_fmt(clean, digits=2)} | {_fmt(pgd)} | {_fmt(aa)} (n = {'/'.join(map(str, n_aa))}) "
                f"| {published} ({anchor.source}) | {_verdict(clean, aa, anchor)} "
                f"| {_fmt(train, 1.0)} | {_fmt(evaluation, 1.0)} |"
            )
        out.append("")
        out.append("Per seed (clean on all test images; the attacks on the first n):\n")
        out.append("| run | clean % | CE PGD-50×10 % (upper bound) | AutoAttack % | worst of both % | n |")
        out.append("|---|---|---|---|---|---|")
        for row in sorted(rows):
            for r in records[row]:
                robust = r.get("robust", {})
                cells = [f"{100 * robust[k]['accuracy']:.1f}" if k in robust else "—" for k in ("pgd50x10", "autoattack", "worst")]
                n = robust.get("pgd50x10", {}).get("examples", "—")
                out.append(f"| {r['run']} | {100 * r['clean']['accuracy']:.2f} | {' | '.join(cells)} | {n} |")
        out.append("")
        out.append("Explanation robustness (Chen et al.'s top-k attack on integrated gradients, the iterate kept by")
        out.append("Kendall's τ; top-k intersection and Kendall's τ at it), saliency quality, randomisation check:\n")
        out.append(
            "| row | seeds | k_attack | top-k ∩ | Kendall τ | max-sens. (saliency / IG) | deletion AUC (saliency / IG) "
            "| ρ after full randomisation | examples |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|")
        for row in sorted(rows):
            runs = records[row]
            keys = sorted({k for r in runs for k in r.get("topk_attack", {})}, key=lambda k: -int(k.split("=")[1]))
            for key in keys:
                have = [r for r in runs if key in r.get("topk_attack", {})]
                inter = [r["topk_attack"][key]["topk_intersection"]["mean"] for r in have]
                kendall = [r["topk_attack"][key]["kendall"]["mean"] for r in have]
                ms = [[r["quality"][m]["max_sensitivity"]["mean"] for r in have] for m in ("saliency", "integrated_gradients")]
                dl = [[r["quality"][m]["deletion_auc"]["mean"] for r in have] for m in ("saliency", "integrated_gradients")]
                rho = [r["randomisation"]["saliency_spearman_fully_randomised"] for r in have]
                examples = sorted({r["expl_examples"] for r in have})
                out.append(
                    f"| {row} | {len(have)} | {key.split('=')[1]} | {_fmt(inter)} % | {_fmt(kendall, 1.0, 3)} "
                    f"| {_fmt(ms[0], 1.0, 3)} / {_fmt(ms[1], 1.0, 3)} | {_fmt(dl[0], 1.0, 3)} / {_fmt(dl[1], 1.0, 3)} "
                    f"| {_fmt(rho, 1.0, 3)} | {'/'.join(map(str, examples))} |"
                )
        out.append("")
    return "\n".join(out)


def main() -> None:
    records, times = load()
    if not records:
        raise SystemExit(f"no evaluation under {HERE / 'evaluations'}: run evaluate_runs.py first")
    sys.stdout.write(render(records, times) + "\n")


if __name__ == "__main__":
    main()
