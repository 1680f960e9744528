"""TCAV (Kim et al., ICML 2018) and its monitor: the t-test equals SciPy's, a class's defining
shape is a significant concept of it and random sets are not, the spurious patch's score for its
class rises while a model learns the shortcut, and the monitor logs its keys without touching
the model."""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from callbacks import TCAVMonitor
from concepts import fit_cav, tcav, ttest_ind
from concepts.cav import _fit
from concepts.stats import regularized_incomplete_beta
from datamodules import SyntheticShapes
from lightning_modules import RobustClassifier
from losses import ERM
from tests.conftest import tiny_trainer_kwargs
from tests.tiny import single_thread  # noqa: F401

LAYER = "net.features.8"  # small_cnn's last rectified feature maps (its Grad-CAM layer)


def adam(params):  # type: ignore[no-untyped-def]
    return torch.optim.Adam(params, lr=3e-3)


def shapes(spurious_rate: float = 0.0, **overrides) -> SyntheticShapes:  # type: ignore[no-untyped-def]
    options = dict(image_size=16, num_classes=3, train_size=768, val_size=32, test_size=8, batch_size=32)
    return SyntheticShapes(spurious_rate=spurious_rate, **(options | overrides))


# -- the t-test ------------------------------------------------------------------------------


def test_the_t_test_p_value_equals_scipys() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    for _ in range(100):
        a = [rng.random() for _ in range(rng.randint(1, 12))]
        b = [rng.random() + rng.choice([0.0, 0.3, 2.0]) for _ in range(rng.randint(2, 12))]
        ours, theirs = ttest_ind(a, b), stats.ttest_ind(a, b)
        assert ours.statistic == pytest.approx(float(theirs.statistic), rel=1e-9)
        assert ours.p_value == pytest.approx(float(theirs.pvalue), rel=1e-8, abs=1e-300)
    for a, b in (([1.0, 1.0, 1.0], [0.0, 0.0]), ([0.5, 0.5], [0.5, 0.5, 0.5])):  # no spread at all
        ours, theirs = ttest_ind(a, b), stats.ttest_ind(a, b)
        assert (math.isnan(ours.p_value) and math.isnan(theirs.pvalue)) or ours.p_value == float(theirs.pvalue)


def test_the_incomplete_beta_has_its_closed_forms() -> None:
    # I_x(a, 1) = x^a and I_x(1, b) = 1 − (1 − x)^b; I_x(a, b) = 1 − I_{1−x}(b, a)
    for x in (0.01, 0.3, 0.77, 0.999):
        assert regularized_incomplete_beta(2.5, 1.0, x) == pytest.approx(x**2.5, rel=1e-12)
        assert regularized_incomplete_beta(1.0, 3.0, x) == pytest.approx(1 - (1 - x) ** 3, rel=1e-12)
        assert regularized_incomplete_beta(4.0, 0.5, x) == pytest.approx(1 - regularized_incomplete_beta(0.5, 4.0, 1 - x), abs=1e-13)


# -- CAVs ------------------------------------------------------------------------------------


def test_a_cav_points_along_the_direction_that_separates_the_sets() -> None:
    g = torch.Generator().manual_seed(0)
    direction = torch.zeros(20)
    direction[3] = 1.0
    concept = torch.randn(40, 20, generator=g) + 4 * direction
    random_set = torch.randn(40, 20, generator=g)
    cav = fit_cav(concept, random_set, seed=1)
    assert cav.vector.norm() == pytest.approx(1.0, abs=1e-5)
    assert float(cav.vector @ direction) > 0.8  # toward the concept, mostly along the shift
    assert cav.accuracy > 0.85  # the Bayes accuracy is Φ(2) ≈ 0.98
    assert torch.equal(fit_cav(concept, random_set, seed=1).vector, cav.vector)  # deterministic


@pytest.mark.parametrize("width", [5, 300])  # fewer and more features than examples
def test_the_logistic_regression_meets_its_optimality_conditions(width: int) -> None:
    # ∇_w = −(1/n) Σ s_i σ(−m_i) x_i + α w = 0 and ∇_b = −(1/n) Σ s_i σ(−m_i) = 0 at the minimiser
    g = torch.Generator().manual_seed(width)
    x = torch.randn(40, width, generator=g, dtype=torch.float64)
    s = torch.where(torch.rand(40, generator=g) < 0.5, 1.0, -1.0).double()
    x[s > 0, 0] += 1.0
    w, b = _fit(x, s, 0.01, 100)
    p = torch.sigmoid(-s * (x @ w + b))
    assert (-(x.T @ (s * p)) / 40 + 0.01 * w).abs().max() < 1e-8
    assert abs(float((s * p).sum())) / 40 < 1e-8


# -- TCAV on a trained model -----------------------------------------------------------------


def _sets(dm: SyntheticShapes, concept: str, n: int = 30, sets: int = 6) -> tuple[torch.Tensor, list[torch.Tensor]]:
    return dm.concept_examples(concept, n), [dm.random_examples(concept, n, seed=i) for i in range(sets)]


def test_a_class_defining_shape_is_a_significant_concept_and_a_random_set_is_not(trained_shapes, single_thread) -> None:  # noqa: F811
    model = trained_shapes.model
    dm = shapes()
    for k, shape in enumerate(dm.class_names):
        concept, randoms = _sets(dm, shape)
        result = tcav(model, LAYER, dm.class_examples(k, 30), k, concept, randoms)
        assert result.score > 0.9 and result.significant, (shape, result)
    # a "concept" that is one more random set (images without the disk) against the others
    randoms = [dm.random_examples("disk", 30, seed=i) for i in range(7)]
    result = tcav(model, LAYER, dm.class_examples(0, 30), 0, randoms[6], randoms[:6])
    assert not result.significant, result


# -- the monitor -----------------------------------------------------------------------------


def _classifier(dm: SyntheticShapes) -> RobustClassifier:
    torch.manual_seed(0)
    return RobustClassifier(
        num_classes=dm.num_classes, input_shape=dm.input_shape, mean=dm.mean, std=dm.std,
        backbone_kwargs={"width": 8, "hidden": 32}, objective=ERM(), eval_attack=None, optimizer=adam,
    )  # fmt: skip


def _fit_with_monitor(spurious_rate: float, tmp_path: Path, epochs: int) -> tuple[dict[str, float], list[dict[str, str]]]:
    """TCAV of the patch for class 0 before training (from Python) and the monitor's CSV rows."""
    dm = shapes(spurious_rate, spurious_class=0)
    model = _classifier(dm)
    monitor = TCAVMonitor(concepts=["patch"], classes=["disk"], concept_size=30, random_sets=6, probe_size=30)
    dm.setup("fit")
    monitor.use_probe(monitor.draw_probe(dm), class_names=dm.class_names)
    before = monitor.evaluate(model.model)
    logger = pl.loggers.CSVLogger(tmp_path, name="tcav")
    trainer = pl.Trainer(**(tiny_trainer_kwargs() | {"logger": logger}), max_epochs=epochs, callbacks=[monitor], limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    with open(Path(logger.log_dir) / "metrics.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("tcav/patch/disk")]
    return before, rows


def test_the_patch_concept_rises_for_the_spurious_class_as_the_model_learns_the_shortcut(tmp_path, single_thread) -> None:  # noqa: F811
    before, rows = _fit_with_monitor(1.0, tmp_path, epochs=3)
    assert len(rows) == 3  # every epoch
    end, end_p = float(rows[-1]["tcav/patch/disk"]), float(rows[-1]["tcav/patch/disk/p_value"])
    assert end >= 0.9 and end_p < 0.05, rows[-1]
    assert end > before["tcav/patch/disk"] + 0.1, (before, rows[-1])
    assert float(rows[-1]["tcav/patch/cav_accuracy"]) > 0.9  # the layer now encodes the patch


def test_without_the_patch_in_training_the_patch_concept_stays_at_chance(tmp_path, single_thread) -> None:  # noqa: F811
    _, rows = _fit_with_monitor(0.0, tmp_path, epochs=3)
    # indistinguishable from random CAVs at every epoch (the score alone wanders: 0.26 to 0.83)
    assert len(rows) == 3 and all(float(r["tcav/patch/disk/p_value"]) >= 0.05 for r in rows), rows


def test_the_monitor_leaves_modes_and_grads_as_found_and_logs_every_key(trained_shapes) -> None:
    dm = shapes(0.5)
    monitor = TCAVMonitor(concepts=["patch", "square"], classes=[0, "triangle"], concept_size=8, random_sets=3, probe_size=6)
    monitor.use_probe(monitor.draw_probe(dm), class_names=dm.class_names)
    model = trained_shapes.model
    model.train()
    model.net.features[0].eval()  # submodules that disagree with the root are restored one by one
    flags = {name: m.training for name, m in model.named_modules()}
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    try:
        values = monitor.evaluate(model)
        assert {name: m.training for name, m in model.named_modules()} == flags
        assert all(torch.equal(p.grad, grads[name]) for name, p in model.named_parameters())
    finally:
        model.eval()
        for p in model.parameters():
            p.grad = None
    expected = {f"tcav/{c}/{k}{suffix}" for c in ("patch", "square") for k in ("disk", "triangle") for suffix in ("", "/p_value")}
    assert set(values) == expected | {"tcav/patch/cav_accuracy", "tcav/square/cav_accuracy"}
    assert all(0.0 <= values[f"tcav/{c}/{k}"] <= 1.0 for c in ("patch", "square") for k in ("disk", "triangle"))


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"concepts": ["stripes"]}, "concepts"),
        ({"concepts": ["patch"], "classes": ["hexagon"]}, "classes"),
        ({"concepts": ["patch"], "classes": [7]}, "classes"),
        ({"concepts": ["patch"], "classes": [0, "disk"]}, "classes"),  # one class twice
    ],
)
def test_unknown_concepts_and_classes_fail_at_setup_naming_the_field(options, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must"):
        TCAVMonitor(**options).draw_probe(shapes())


@pytest.mark.parametrize(
    ("options", "field"),
    [({"concepts": []}, "concepts"), ({"concepts": ["patch"], "random_sets": 1}, "random_sets"), ({"concepts": ["patch"], "alpha": 0}, "alpha")],
)
def test_bad_monitor_options_fail_when_built_naming_the_option(options, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must"):
        TCAVMonitor(**options)
