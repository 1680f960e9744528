"""Monitoring callbacks: they measure what the metrics package measures, and never steer training.

Values are checked against the metrics package (and PGD, and the randomisation function) called
directly on the whole probe set; "never steer" against a fit without the callbacks, which must
end with bit-identical weights, and against a model with mixed modes and filled ``.grad``.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from attacks import PGD
from attributions import build_attribution
from callbacks import ExplanationMonitor, RobustnessEvaluator, SanityCheck, gather_rows, observing, share_bounds
from callbacks.cadence import Cadence
from datamodules import ProbeBatch, SyntheticShapes
from metrics import compute_metrics
from metrics.functional import cascading_randomisation
from tests.conftest import tiny_trainer_kwargs
from tests.monitoring import BATCHES_PER_EPOCH, fit, monitor, robustness, sanity, tiny_data, tiny_model
from tests.tiny import tiny_cnn
from tests.trained_model import TrainedShapes


def _probe(trained: TrainedShapes, n: int = 20) -> ProbeBatch:
    # Dataset indices that are not positions, so that a mix-up of ids and positions would show.
    return ProbeBatch(trained.x[:n], trained.y[:n], torch.arange(n) * 3 + 5, trained.masks[:n], None)


# -- building blocks ----------------------------------------------------------------------------


def test_observing_restores_modes_and_every_random_stream_and_enables_gradients() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Dropout(0.5))
    model.train()
    model[1].eval()  # a frozen BatchNorm inside a training model
    flags = [m.training for m in model.modules()]
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    with torch.inference_mode(), observing(model):
        assert not any(m.training for m in model.modules())
        assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
        torch.rand(5), np.random.rand(5), random.random()  # draws a third-party library could make
    assert [m.training for m in model.modules()] == flags
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]


def test_cadence_runs_every_n_epochs_or_steps() -> None:
    assert Cadence.from_options(None, None) == Cadence(1, None)  # default: every epoch
    epochs = Cadence.from_options(2, None)
    assert [e for e in range(6) if epochs.due_after_epoch(e)] == [1, 3, 5]
    assert not any(epochs.due_after_step(s) for s in range(10))
    steps = Cadence.from_options(None, 3)
    assert [s for s in range(10) if steps.due_after_step(s)] == [3, 6, 9]
    assert not any(steps.due_after_epoch(e) for e in range(6))


@pytest.mark.parametrize("n, world_size", [(1, 1), (7, 1), (7, 2), (10, 3), (4, 4), (9, 4)])
def test_shares_tile_the_probe_set_in_rank_order(n: int, world_size: int) -> None:
    bounds = [share_bounds(n, world_size, rank) for rank in range(world_size)]
    rows = [i for start, stop in bounds for i in range(start, stop)]
    assert rows == list(range(n))
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    assert torch.equal(gather_rows(torch.arange(n), n), torch.arange(n))  # one process: itself


# -- bad options fail in the constructor, naming the option --------------------------------------


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: ExplanationMonitor(methods=["saliency", "nope"]), "methods"),
        (lambda: ExplanationMonitor(methods=[]), "methods"),
        (lambda: ExplanationMonitor(metrics=["spearman@noise", "nope"]), "metrics"),
        (lambda: ExplanationMonitor(metrics=["randomisation"]), "metrics"),
        (lambda: ExplanationMonitor(method_options={"grad_cam": {}}), "method_options"),
        (lambda: ExplanationMonitor(method_options={"integrated_gradients": {"steps": 0}}), "method_options"),
        (lambda: ExplanationMonitor(method_options={"saliency": {"bogus": 1}}), "method_options"),
        (lambda: ExplanationMonitor(metrics=["spearman@noise"], metric_options={"cosine@noise": {}}), "metric_options"),
        (lambda: ExplanationMonitor(metric_options={"spearman@noise": {"eps": 2.0}}), "metric_options"),
        (lambda: ExplanationMonitor(metric_options={"spearman@noise": {"radius": 0.1}}), "metric_options"),
        (lambda: ExplanationMonitor(every_n_epochs=0), "every_n_epochs"),
        (lambda: ExplanationMonitor(every_n_steps=-2), "every_n_steps"),
        (lambda: ExplanationMonitor(every_n_epochs=1, every_n_steps=10), "every_n_epochs"),
        (lambda: ExplanationMonitor(probe_size=0), "probe_size"),
        (lambda: ExplanationMonitor(panels=-1), "panels"),
        (lambda: ExplanationMonitor(target="logit"), "target"),  # type: ignore[arg-type]
        (lambda: ExplanationMonitor(colormap="nope"), "colormap"),
        (lambda: RobustnessEvaluator(eps=[]), "eps"),
        (lambda: RobustnessEvaluator(eps=[0.1, 0.1]), "eps"),
        (lambda: RobustnessEvaluator(eps=[0.1, 1.5]), "eps"),
        (lambda: RobustnessEvaluator(attacks=[]), "attacks"),
        (lambda: RobustnessEvaluator(attacks=[PGD(seed=None)]), "attacks"),  # an unseeded random start
        (lambda: RobustnessEvaluator(attacks=[PGD(steps=3, seed=0), PGD(steps=3, seed=1)]), "attacks"),  # one name twice
        (lambda: RobustnessEvaluator(attacks=[PGD(seed=0), PGD(norm="l2", loss="margin", seed=0)]), "attacks"),
        (lambda: RobustnessEvaluator(eps=[0.1], attacks=[PGD(norm="l2", seed=0)]), None),  # valid: L2 allows any ε >= 0
        (lambda: RobustnessEvaluator(prefix="robust/final"), "prefix"),
        (lambda: RobustnessEvaluator(at_fit_end="yes"), "at_fit_end"),
        (lambda: RobustnessEvaluator(every_n_steps=0), "every_n_steps"),
        (lambda: SanityCheck(similarities=["pearson"]), "similarities"),
        (lambda: SanityCheck(methods=["nope"]), "methods"),
        (lambda: SanityCheck(seed=-1), "seed"),
    ],
)
def test_bad_options_fail_when_built_naming_the_option(build, argument: str | None) -> None:
    if argument is None:
        build()
        return
    with pytest.raises(ValueError, match=rf"^{argument} must"):
        build()


class WithoutMasks(SyntheticShapes):
    """Synthetic shapes whose probe sets carry no ground-truth masks (as MNIST's)."""

    def _gather(self, dataset, indices):  # type: ignore[no-untyped-def]
        probe = super()._gather(dataset, indices)
        return ProbeBatch(probe.x, probe.y, probe.indices)


def _setup_fails(callback: pl.Callback, dm: SyntheticShapes, match: str) -> None:
    model = tiny_model(dm)
    trainer = pl.Trainer(**tiny_trainer_kwargs(), max_epochs=1, callbacks=[callback])
    with pytest.raises(ValueError, match=match):
        trainer.fit(model, dm)
    assert trainer.global_step == 0  # before any training


def test_a_probe_larger_than_the_validation_split_fails_at_setup_naming_the_option() -> None:
    for callback in (monitor(probe_size=33), robustness(probe_size=33), sanity(probe_size=33)):
        _setup_fails(callback, tiny_data(val_size=32), r"^probe_size must be at most 32 \(the size of the val split")


def test_mask_metrics_need_a_datamodule_with_masks() -> None:
    dm = WithoutMasks(image_size=16, num_classes=3, train_size=32, val_size=16, batch_size=16)
    _setup_fails(monitor(), dm, r"^metrics must not include 'relevance_mass' with WithoutMasks: .*ground-truth object masks")
    _setup_fails(monitor(metrics=["spurious_share"]), tiny_data(), r"^metrics must not include 'spurious_share'.*spurious_rate")
    # The default metrics adapt: localisation only where masks exist (its options then unused).
    default = ExplanationMonitor(probe_size=4, methods=["saliency"], metric_options={"pointing_game": {"tolerance": 1}})
    default.use_probe(dm.probe_batch(4))
    assert default.metric_names == ["topk_intersection@noise", "spearman@noise"]
    assert set(default.evaluate(tiny_cnn(num_classes=3)).values) == {
        "expl/saliency/topk_intersection@noise",
        "expl/saliency/spearman@noise",
    }
    default.use_probe(tiny_data().probe_batch(4))
    assert default.metric_names == ["topk_intersection@noise", "spearman@noise", "relevance_mass", "pointing_game"]


# -- the values are the metrics package's --------------------------------------------------------


def test_monitor_values_and_per_example_scores_equal_the_metrics_on_the_whole_probe_set(trained_shapes) -> None:
    probe = _probe(trained_shapes)
    callback = monitor(probe_size=len(probe))
    callback.use_probe(probe)
    scores = callback.evaluate(trained_shapes.model, samples=True, panels=3)
    assert scores.samples is not None and torch.equal(scores.samples["id"], probe.indices)
    for name, method in callback.methods.items():
        reference = compute_metrics(
            callback.metric_names, trained_shapes.model, probe.x, probe.y, method, probe.mask, example_ids=probe.indices
        )
        for metric, values in reference.items():
            torch.testing.assert_close(scores.samples[f"{name}/{metric}"], values, equal_nan=True, rtol=1e-4, atol=1e-5)
            expected = float(values[~values.isnan()].mean())
            assert scores.values[f"expl/{name}/{metric}"] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    # Panels: the first examples, Φ(x) as the method gives it, x' the noise the metric used.
    rows = scores.panels["integrated_gradients"]
    assert len(rows) == 3 and torch.equal(rows.x, probe.x[:3]) and torch.equal(rows.mask, probe.mask[:3])
    method = callback.methods["integrated_gradients"]
    torch.testing.assert_close(rows.attribution, method(trained_shapes.model, probe.x[:3], probe.y[:3]))
    assert 0 < (rows.perturbed - rows.x).abs().max() <= 0.1 + 1e-6


def test_robustness_curve_equals_pgd_at_each_radius_and_never_increases(trained_shapes) -> None:
    probe = _probe(trained_shapes, 24)
    callback = robustness(eps=[0.15, 0.0, 0.05], probe_size=len(probe))  # any order
    callback.use_probe(probe)
    values = callback.evaluate(trained_shapes.model)
    model, x, y = trained_shapes.model, probe.x, probe.y
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    robust = clean
    assert values["robust/acc@eps=0"] == pytest.approx(clean.float().mean().item())
    for eps in (0.05, 0.15):
        x_adv = PGD(eps=eps, step_size=2.5 * eps / 3, steps=3, random_start=False)(model, x, y)  # α scaled with ε
        with torch.no_grad():
            here = clean & (model(x_adv).argmax(1) == y)
        robust = robust & here  # a broken example stays broken at a larger radius
        assert values[f"robust/pgd3-ce/acc@eps={eps:g}"] == pytest.approx(here.float().mean().item())
        assert values[f"robust/acc@eps={eps:g}"] == pytest.approx(robust.float().mean().item())
    curve = [values[f"robust/acc@eps={e:g}"] for e in (0.0, 0.05, 0.15)]
    assert curve == sorted(curve, reverse=True) and curve[0] > curve[-1]


def test_sanity_check_equals_cascading_randomisation_and_the_edge_control_stays_at_one(trained_shapes) -> None:
    probe = _probe(trained_shapes, 12)
    callback = sanity(methods=["saliency", "edge"], probe_size=len(probe))
    callback.use_probe(probe)
    result = callback.evaluate(trained_shapes.model)
    reference = cascading_randomisation(trained_shapes.model, probe.x, probe.y, build_attribution("saliency"))
    assert result.layers == reference.layers and result.layers[0] == "net.classifier.3"  # top first
    torch.testing.assert_close(result.similarity["saliency"]["spearman"], reference.spearman.nanmean(0))
    torch.testing.assert_close(result.similarity["saliency"]["ssim"], reference.ssim.nanmean(0))
    torch.testing.assert_close(result.similarity["edge"]["spearman"], torch.ones(len(reference.layers)))
    scalars = result.scalars()
    assert scalars["sanity/saliency/spearman@all"] == scalars[f"sanity/saliency/spearman@{reference.layers[-1]}"]
    assert scalars["sanity/saliency/spearman@all"] < 0.5  # the trained model's saliency passes


# -- observing never steers ----------------------------------------------------------------------


def test_evaluating_leaves_modes_grad_inputs_and_random_streams_as_found(trained_shapes) -> None:
    model = trained_shapes.model
    model.train()
    model.net.classifier.eval()  # mixed modes
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    grads = {name: p.grad for name, p in model.named_parameters()}
    copies = {name: g.clone() for name, g in grads.items()}
    flags = {name: m.training for name, m in model.named_modules()}
    probe = _probe(trained_shapes, 8)
    rng = torch.get_rng_state()
    try:
        for callback in (monitor(probe_size=8, methods=["saliency", "random"], method_options=None), robustness(probe_size=8), sanity(probe_size=8)):
            callback.use_probe(probe)
            with torch.inference_mode():  # as in Lightning's validation loop
                if isinstance(callback, ExplanationMonitor):
                    callback.evaluate(model, samples=True, panels=2)
                else:
                    callback.evaluate(model)
            assert {name: m.training for name, m in model.named_modules()} == flags, type(callback).__name__
            for name, p in model.named_parameters():
                assert p.grad is grads[name] and torch.equal(p.grad, copies[name]), name
            assert not probe.x.requires_grad
            assert torch.equal(torch.get_rng_state(), rng)  # the "random" method drew from it
    finally:
        model.eval()
        for p in model.parameters():
            p.grad = None


def test_a_fit_with_the_callbacks_ends_with_the_weights_of_a_fit_without_them() -> None:
    # The monitor's "random" method draws from the global RNG, as third-party code could; the
    # model has BatchNorm, whose statistics a forward pass in train mode would move.
    callbacks = [
        monitor(every_n_steps=4, methods=["saliency", "random"], method_options=None),
        robustness(every_n_epochs=1),
        sanity(),
    ]
    observed = fit(callbacks, epochs=2)
    plain = fit([], epochs=2)
    for name, value in plain.state_dict().items():
        assert torch.equal(observed.state_dict()[name], value), name
    assert callbacks[0].runs == 2 * BATCHES_PER_EPOCH // 4 and callbacks[1].runs == 2
    assert callbacks[2].last is not None
    assert callbacks[0].last is not None and callbacks[1].last  # computed, even with no logger


def test_nothing_runs_outside_a_real_fit() -> None:
    callbacks = [monitor(every_n_steps=1), robustness(), sanity()]
    dm = tiny_data()
    model = tiny_model(dm)
    pl.Trainer(**tiny_trainer_kwargs(), callbacks=callbacks).validate(model, dm)
    pl.Trainer(**tiny_trainer_kwargs(), max_epochs=1, fast_dev_run=2, callbacks=callbacks).fit(model, dm)
    assert callbacks[0].runs == callbacks[1].runs == 0 and callbacks[2].last is None


def test_panels_colour_the_most_relevant_pixel_brightest_and_tile_without_a_mask() -> None:
    from callbacks.attribution_panels import PanelRows, heat, strips

    attribution = torch.zeros(2, 1, 16, 16)
    attribution[0, 0, 3, 4] = -5.0  # the magnitude counts, not the sign
    attribution[1, 0, 10, 2] = 2.0
    colours = heat(attribution)  # (2, 16, 16, 3)
    brightness = colours.sum(-1).flatten(1)
    assert brightness.argmax(1).tolist() == [3 * 16 + 4, 10 * 16 + 2]
    x = torch.rand(2, 3, 16, 16)
    (first, second) = strips(PanelRows(x, attribution.expand(-1, 3, -1, -1), x, attribution.expand(-1, 3, -1, -1)))
    assert first.shape == second.shape == (96, 4 * 96 + 3 * 2, 3) and first.dtype == np.uint8  # x | Φ | x' | Φ'
    np.testing.assert_array_equal(first[:96:6, :96:6], (x[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy())
