"""Seconds of the concept methods on the quickstart-shaped model (small_cnn width 16, hidden 128,
4 classes, 1×28×28 synthetic shapes): CRP (top-3 channels of the Grad-CAM layer, EpsilonPlusFlat)
and plain LRP per 100 images, one TCAV (concept × class, R random sets) and one TCAVMonitor run
with its defaults. Timing does not depend on the weights, so the model is freshly initialised.

    PYTHONPATH=. python benchmarks/concepts_speed.py --threads 1

Run by hand, never in CI; say that the machine was shared when it was.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys

import torch

from attributions.grad_cam import default_gradcam_layer
from benchmarks.timing import median_seconds
from callbacks import TCAVMonitor
from concepts import ConceptRelevance, tcav
from datamodules import SyntheticShapes
from lightning_modules import build_model


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dm = SyntheticShapes(image_size=28, num_classes=4, spurious_rate=0.5, val_size=64)
    model = build_model("small_cnn", 4, (1, 28, 28), dm.mean, dm.std, backbone_kwargs={"width": 16, "hidden": 128}).eval()
    layer = default_gradcam_layer(model)
    data = dm.split_dataset("test").data
    x, y = data.images[:100], data.labels[:100]
    crp = ConceptRelevance(layer)
    rows = [
        ("plain LRP (EpsilonPlusFlat), 100 images", median_seconds(lambda: crp.propagate(model, x, y, None), args.repeats)),
        ("CRP top-3 channels + heatmaps, 100 images", median_seconds(lambda: crp(model, x, y, top=3), args.repeats)),
    ]
    concept, randoms = dm.concept_examples("patch", 30), [dm.random_examples("patch", 30, seed=i) for i in range(8)]
    inputs = dm.class_examples(0, 30)
    rows.append(("TCAV, 1 concept × 1 class, 30 examples, R = 8", median_seconds(lambda: tcav(model, layer, inputs, 0, concept, randoms), args.repeats)))
    monitor = TCAVMonitor(concepts=["patch", "disk"])
    monitor.use_probe(monitor.draw_probe(dm), class_names=dm.class_names)
    rows.append(("TCAVMonitor run, defaults, 2 concepts × 4 classes", median_seconds(lambda: monitor.evaluate(model), args.repeats)))
    print(f"# concepts_speed: {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), layer {layer}")
    print(f"# PYTHONPATH=. python benchmarks/concepts_speed.py {shlex.join(argv)}\n")
    print("| what | seconds (median of %d) |" % args.repeats)
    print("| --- | --- |")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
