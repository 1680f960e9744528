"""The report's two pictures, drawn with matplotlib's object API (no pyplot, no global state, no
display needed).

- :func:`attribution_figure`: one column per example; the first row shows the input (title:
  label and prediction, red when wrong), each further row one method's map Σ_c |Φ_c|, scaled
  per image to its 99th percentile so that a few extreme pixels do not wash the map out.
- :func:`concept_figure`: one row per example; the input, then the heatmap conditioned on each
  of its most relevant channels (CRP), signed (red: evidence for the class, blue: against),
  on one symmetric scale per example (its 99th percentile of |R|), titled with the channel and
  its share of the layer's relevance.
- :func:`accuracy_plot`: accuracy under each attack against ε, the per-example worst case over
  all of them (and over ε' ≤ ε where it differs), and the recipe's evaluation ε marked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor

from report.compute import AccuracyCurve, ConceptFigureData, FigureData

CELL_INCHES = 1.5
PERCENTILE = 0.99


def _scaled(maps: Tensor) -> Tensor:
    """(N, H, W) maps divided by their own 99th percentile, clipped to [0, 1]."""
    flat = maps.flatten(1).float()
    scale = torch.quantile(flat, PERCENTILE, dim=1).clamp_min(1e-12)  # (N,)
    return (flat / scale[:, None]).clamp(0.0, 1.0).view_as(maps)


def _image(x: Tensor) -> Tensor:
    """(C, H, W) in [0, 1] to what ``imshow`` takes: (H, W) for grey, (H, W, 3) for colour."""
    return x[0] if x.shape[0] == 1 else x.permute(1, 2, 0)


def attribution_figure(data: FigureData, class_names: Sequence[str], path: Path, title: str = "") -> None:
    """Write the attribution figure (PNG) of ``data`` to ``path``."""
    methods = list(data.maps)
    n = int(data.x.shape[0])
    figure = Figure(figsize=(CELL_INCHES * n + 1.2, CELL_INCHES * (len(methods) + 1) + 0.6), layout="constrained")
    axes = figure.subplots(len(methods) + 1, n, squeeze=False)
    scaled = {name: _scaled(maps) for name, maps in data.maps.items()}
    for j in range(n):
        label, predicted = int(data.labels[j]), int(data.predictions[j])
        ax = axes[0, j]
        ax.imshow(_image(data.x[j]).numpy(), cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_title(
            f"#{int(data.indices[j])}\nlabel: {class_names[label]}\npred: {class_names[predicted]}",
            fontsize=8,
            color="black" if label == predicted else "red",
        )
        for i, name in enumerate(methods, start=1):
            axes[i, j].imshow(scaled[name][j].numpy(), cmap="inferno", vmin=0.0, vmax=1.0)
    for i, name in enumerate(["input", *methods]):
        axes[i, 0].set_ylabel(name, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        figure.suptitle(title, fontsize=10)
    figure.savefig(path, dpi=100)


def concept_figure(data: ConceptFigureData, class_names: Sequence[str], path: Path, title: str = "") -> None:
    """Write the concept figure (PNG) of ``data`` to ``path``."""
    n, m = int(data.channels.shape[0]), int(data.channels.shape[1])
    figure = Figure(figsize=(CELL_INCHES * (m + 1) + 0.6, CELL_INCHES * n + 0.9), layout="constrained")
    axes = figure.subplots(n, m + 1, squeeze=False)
    for i in range(n):
        ax = axes[i, 0]
        ax.imshow(_image(data.x[i]).numpy(), cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_title(f"#{int(data.indices[i])}\nexplained: {class_names[int(data.targets[i])]}", fontsize=8)
        scale = float(torch.quantile(data.heatmaps[i].abs().flatten().float(), PERCENTILE).clamp_min(1e-12))
        total = float(data.total[i])
        for j in range(m):
            share = float(data.relevance[i, j]) / total if total != 0 else float("nan")
            axes[i, j + 1].imshow(data.heatmaps[i, j].numpy(), cmap="bwr", vmin=-scale, vmax=scale)
            axes[i, j + 1].set_title(f"channel {int(data.channels[i, j])}: {share:.0%}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    figure.suptitle(
        (f"{title}\n" if title else "") + f"CRP: top channels of {data.layer} ({data.composite}), share of the layer's relevance",
        fontsize=9,
    )
    figure.savefig(path, dpi=100)


def accuracy_plot(curve: AccuracyCurve, norm: str, path: Path, marked_eps: float | None = None, title: str = "") -> None:
    """Write the accuracy-against-ε plot (PNG) of ``curve`` to ``path``: one line per attack
    (cross-entropy PGD dotted: an upper bound), the worst case over all of them in black."""
    figure = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = figure.subplots()
    for name, accuracy in curve.by_attack.items():
        style = ":" if name.endswith("-ce") else "-"
        ax.plot(curve.eps, accuracy, marker="o", markersize=4, linestyle=style, label=name)
    ax.plot(curve.eps, curve.worst, color="black", linewidth=2, label="worst case over the attacks")
    if curve.worst_up_to_eps != curve.worst:
        ax.plot(curve.eps, curve.worst_up_to_eps, color="black", linestyle="--", label="worst case over ε' ≤ ε")
    if marked_eps is not None:
        ax.axvline(marked_eps, color="grey", linestyle=":", label=f"recipe's evaluation ε = {marked_eps:.4g}")
    ax.set_xlabel(f"ε ({'L∞' if norm == 'linf' else 'L2'}, pixels in [0, 1])")
    ax.set_ylabel(f"accuracy ({curve.examples} test examples)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    figure.savefig(path, dpi=100)
