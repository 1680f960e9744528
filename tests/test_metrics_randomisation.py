"""Randomisation family: random logit, independent and smoothed parameter randomisation, and the
weight-noise check. Closed forms (the edge control ignores the weights and the class) and
Quantus 0.6 on identical inputs, with its re-initialisation seeds and noise draws replaced by
ours so that both compute the same thing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from attributions import EdgeDetector, Saliency
from common.example_noise import example_noise
from metrics.functional.randomisation import (
    _SMOOTHING_STREAM,
    independent_randomisation,
    layer_seed,
    model_perturbation,
    parameter_layers,
    random_logit,
    smoothed_randomisation,
)
from tests.metric_cases import tiny_model


@pytest.fixture(scope="module")
def batch() -> tuple[nn.Module, Tensor, Tensor]:
    torch.manual_seed(3)
    return tiny_model(seed=1), torch.rand(6, 1, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2])


def _explain(model: nn.Module, inputs: Any, targets: Any, **kwargs: Any) -> np.ndarray:
    """Saliency as a Quantus ``explain_func``."""
    x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
    return Saliency()(model, x, torch.as_tensor(np.asarray(targets)).long()).detach().numpy()


class _SeededTorch:
    """``torch`` for Quantus's model wrapper, with its k-th ``manual_seed`` call replaced by
    our seed of layer k (Quantus reseeds with ``seed + 1`` before every layer's reset)."""

    def __init__(self, seeds: list[int]) -> None:
        self._seeds, self._calls = seeds, 0

    def manual_seed(self, seed: int) -> Any:
        chosen = self._seeds[self._calls % len(self._seeds)]
        self._calls += 1
        return torch.manual_seed(chosen)

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


class _NoisyNumpy:
    """``numpy`` for Quantus's SmoothMPRT, whose ``random.randn`` returns our noise z_j in turn."""

    def __init__(self, draws: list[np.ndarray]) -> None:
        self._draws, self._calls = draws, 0
        outer = self

        class _Random:
            def randn(self, *shape: int) -> np.ndarray:
                draw = outer._draws[outer._calls % len(outer._draws)]
                outer._calls += 1
                assert draw.shape == shape
                return draw

            def __getattr__(self, name: str) -> Any:
                return getattr(np.random, name)

        self.random = _Random()

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


def _unchanged(model: nn.Module, state: dict[str, Tensor]) -> bool:
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_the_edge_control_scores_maximal_similarity_everywhere(batch: tuple[nn.Module, Tensor, Tensor]) -> None:
    model, x, y = batch
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    edges, ones = EdgeDetector(), torch.ones(len(y))
    torch.testing.assert_close(random_logit(model, x, y, edges), ones)
    torch.testing.assert_close(random_logit(model, x, y, edges, similarity="spearman"), ones)
    torch.testing.assert_close(independent_randomisation(model, x, y, edges), ones)
    torch.testing.assert_close(smoothed_randomisation(model, x, y, edges, n_samples=3), ones)
    torch.testing.assert_close(model_perturbation(model, x, y, edges, n_samples=2), ones)
    # Saliency depends on the weights and the class: every check tells it apart from the control.
    saliency = Saliency()
    assert (random_logit(model, x, y, saliency) < 0.9).all()
    assert (independent_randomisation(model, x, y, saliency) < 0.5).all()
    assert (smoothed_randomisation(model, x, y, saliency, n_samples=3) < 0.5).all()
    assert _unchanged(model, state) and torch.equal(torch.get_rng_state(), rng)


def test_random_logit_draws_another_class_per_example(batch: tuple[nn.Module, Tensor, Tensor]) -> None:
    model, x, y = batch
    ids = torch.arange(300)
    u = example_noise((1,), ids, 0, 40)[:, 0]
    drawn = (u * 2).long() + 1  # the rule for target 0 of 3 classes
    assert set(drawn.tolist()) == {1, 2} and 100 < int((drawn == 1).sum()) < 200
    # The score of an example depends on its id, not on its place in the batch.
    order = torch.tensor([3, 0, 5, 1, 4, 2])
    ids = torch.tensor([10, 11, 12, 13, 14, 15])
    full = random_logit(model, x, y, Saliency(), ids=ids)
    torch.testing.assert_close(random_logit(model, x[order], y[order], Saliency(), ids=ids[order]), full[order])
    # A fixed other class replaces the draw; the target itself is refused.
    other = (y + 1) % 3
    fixed = random_logit(model, x, y, Saliency(), other=other, similarity="spearman")
    by_hand = torch.stack([
        random_logit(model, x[i : i + 1], y[i : i + 1], Saliency(), other=other[i : i + 1], similarity="spearman")[0]
        for i in range(len(y))
    ])
    torch.testing.assert_close(fixed, by_hand)
    with pytest.raises(ValueError, match="other must be"):
        random_logit(model, x, y, Saliency(), other=y)


@pytest.mark.parametrize("classes", [2, 3])
def test_random_logit_equals_quantus(classes: int, batch: tuple[nn.Module, Tensor, Tensor]) -> None:
    quantus = pytest.importorskip("quantus")
    _, x, _ = batch
    model = tiny_model(seed=2, classes=classes)
    y = torch.arange(len(x)) % classes
    metric = quantus.RandomLogit(
        num_classes=classes, seed=7, similarity_func=quantus.similarity_func.correlation_spearman, disable_warnings=True
    )
    expected = metric(model, x.numpy(), y.numpy(), a_batch=None, explain_func=_explain, device="cpu")
    # Quantus's off-class draw, replayed (with 2 classes it is the other class, whatever the seed).
    np.random.seed(7)
    offsets = np.random.randint(0, classes - 1, len(y))
    other = torch.tensor([[c for c in range(classes) if c != t][o] for t, o in zip(y.tolist(), offsets)])
    ours = random_logit(model, x, y, Saliency(), other=other, similarity="spearman")
    np.testing.assert_allclose(ours.numpy(), np.asarray(expected, dtype=np.float64), atol=1e-5)
    if classes == 2:  # no choice to make: the random draw agrees too
        torch.testing.assert_close(random_logit(model, x, y, Saliency(), similarity="spearman"), ours)


def test_independent_randomisation_equals_quantus_layer_by_layer(
    monkeypatch: pytest.MonkeyPatch, batch: tuple[nn.Module, Tensor, Tensor]
) -> None:
    quantus = pytest.importorskip("quantus")
    from quantus.helpers.model import pytorch_model

    model, x, y = batch
    layers = parameter_layers(model, x)
    monkeypatch.setattr(pytorch_model, "torch", _SeededTorch([layer_seed(5, i) for i in range(len(layers))]))
    metric = quantus.MPRT(layer_order="independent", seed=5, disable_warnings=True)
    expected = metric(model, x.numpy(), y.numpy(), a_batch=None, explain_func=_explain, device="cpu", batch_size=64)
    ours = independent_randomisation(model, x, y, Saliency(), seed=5, aggregate="none")  # (B, L), forward order
    assert list(expected)[1:] == layers
    for i, name in enumerate(layers):
        np.testing.assert_allclose(ours[:, i].numpy(), np.asarray(expected[name]), atol=1e-5)
    # Documented difference: Quantus's per-example average also counts the original's
    # self-similarity (1), a key mismatch; ours averages the layers only.
    quantus_mean = np.mean([expected[k] for k in expected], axis=0)
    np.testing.assert_allclose(quantus_mean, (1 + ours.sum(dim=1).numpy()) / (len(layers) + 1), atol=1e-5)
    torch.testing.assert_close(independent_randomisation(model, x, y, Saliency(), seed=5), ours.mean(dim=1))


def test_smoothed_randomisation_equals_quantus_with_the_same_noise(
    monkeypatch: pytest.MonkeyPatch, batch: tuple[nn.Module, Tensor, Tensor]
) -> None:
    quantus = pytest.importorskip("quantus")
    from quantus.helpers.model import pytorch_model
    from quantus.metrics.randomisation import smooth_mprt

    model, x, y = batch
    layers, n = parameter_layers(model, x), 4
    draws = [
        example_noise(tuple(x.shape[1:]), torch.arange(len(x)), 9, _SMOOTHING_STREAM, j, "normal").double().numpy()
        for j in range(n - 1)
    ]
    monkeypatch.setattr(pytorch_model, "torch", _SeededTorch([layer_seed(9, i) for i in range(len(layers))]))
    monkeypatch.setattr(smooth_mprt, "np", _NoisyNumpy(draws))
    metric = quantus.SmoothMPRT(layer_order="bottom_up", seed=9, nr_samples=n, noise_magnitude=0.2, disable_warnings=True)
    expected = metric(
        model, x.numpy(), y.numpy(), a_batch=None, explain_func=_explain,
        explain_func_kwargs={"method": "Saliency"}, device="cpu", batch_size=64,
    )
    ours = smoothed_randomisation(model, x, y, Saliency(), n_samples=n, noise_magnitude=0.2, seed=9, aggregate="none")
    np.testing.assert_allclose(np.asarray(expected["original"]), 1.0, atol=1e-6)  # both saw the same noise
    for i, name in enumerate(layers):  # bottom-up: stage i randomises layers 0..i
        np.testing.assert_allclose(ours[:, i].numpy(), np.asarray(expected[name]), atol=1e-4)


def test_smoothed_randomisation_reduces_to_the_plain_checks(batch: tuple[nn.Module, Tensor, Tensor]) -> None:
    model, x, y = batch
    saliency = Saliency()
    # One sample is the clean explanation: the independent order is then the independent check.
    torch.testing.assert_close(
        smoothed_randomisation(model, x, y, saliency, n_samples=1, order="independent", seed=2, aggregate="none"),
        independent_randomisation(model, x, y, saliency, seed=2, aggregate="none"),
    )
    # Without noise, averaging N copies of one map changes nothing.
    torch.testing.assert_close(
        smoothed_randomisation(model, x, y, saliency, n_samples=3, noise_magnitude=0.0, order="top_down"),
        smoothed_randomisation(model, x, y, saliency, n_samples=1, order="top_down"),
    )
    # Cascading orders end with the whole network random, in either direction.
    up = smoothed_randomisation(model, x, y, saliency, n_samples=1, order="bottom_up", aggregate="last")
    down = smoothed_randomisation(model, x, y, saliency, n_samples=1, order="top_down", aggregate="last")
    torch.testing.assert_close(up, down)
    # The noise is drawn per example: a split batch scores as the whole.
    ids = torch.arange(100, 106)
    whole = smoothed_randomisation(model, x, y, saliency, n_samples=3, ids=ids)
    halves = torch.cat([smoothed_randomisation(model, x[s], y[s], saliency, n_samples=3, ids=ids[s]) for s in (slice(0, 3), slice(3, 6))])
    torch.testing.assert_close(halves, whole)


def test_model_perturbation_falls_with_the_noise_and_is_batch_free(batch: tuple[nn.Module, Tensor, Tensor]) -> None:
    model, x, y = batch
    state = {k: v.clone() for k, v in model.state_dict().items()}
    saliency = Saliency()
    torch.testing.assert_close(model_perturbation(model, x, y, saliency, sigma=0.0, n_samples=2), torch.ones(len(y)))
    small = model_perturbation(model, x, y, saliency, sigma=0.01, n_samples=4)
    large = model_perturbation(model, x, y, saliency, sigma=1.0, n_samples=4)
    assert (small > 0.9).all() and (large < small - 0.2).all(), (small, large)
    additive = model_perturbation(model, x, y, saliency, sigma=1.0, noise="additive", n_samples=2)
    assert (additive < 0.5).all()
    torch.testing.assert_close(
        torch.cat([model_perturbation(model, x[:2], y[:2], saliency, n_samples=3), model_perturbation(model, x[2:], y[2:], saliency, n_samples=3)]),
        model_perturbation(model, x, y, saliency, n_samples=3),
    )
    assert _unchanged(model, state)


@pytest.mark.parametrize(
    ("function", "options", "field"),
    [
        (random_logit, {"similarity": "pearson"}, "similarity"),
        (random_logit, {"reduction": "max"}, "reduction"),
        (independent_randomisation, {"aggregate": "median"}, "aggregate"),
        (smoothed_randomisation, {"order": "random"}, "order"),
        (smoothed_randomisation, {"n_samples": 0}, "n_samples"),
        (smoothed_randomisation, {"noise_magnitude": -1.0}, "noise_magnitude"),
        (model_perturbation, {"noise": "uniform"}, "noise"),
        (model_perturbation, {"sigma": -0.1}, "sigma"),
    ],
)
def test_bad_options_name_the_field(function: Any, options: dict[str, Any], field: str, batch: tuple[nn.Module, Tensor, Tensor]) -> None:
    model, x, y = batch

    class Refuse(Saliency):
        def attribute(self, *args: Any, **kwargs: Any) -> Tensor:  # no work may start before the check
            raise AssertionError("attribution computed before the options were checked")

    with pytest.raises(ValueError, match=field):
        function(model, x, y, Refuse(), **options)


NAMES = ("random_logit", "independent_randomisation", "smoothed_randomisation", "model_perturbation")


def test_the_family_by_name_equals_the_functions_and_the_report_accepts_it(batch: tuple[nn.Module, Tensor, Tensor]) -> None:
    from metrics import build_metric, check_metric, compute_metrics, metric_spec
    from report.plan import _check_metric_names

    model, x, y = batch
    ids = torch.arange(20, 26)
    options = {"smoothed_randomisation": {"n_samples": 2, "seed": 3}, "model_perturbation": {"n_samples": 2}}
    scores = compute_metrics(NAMES, model, x, y, Saliency(), options=options, example_ids=ids)
    saliency = Saliency()
    torch.testing.assert_close(scores["random_logit"], random_logit(model, x, y, saliency, ids=ids))
    torch.testing.assert_close(scores["independent_randomisation"], independent_randomisation(model, x, y, saliency))
    torch.testing.assert_close(
        scores["smoothed_randomisation"], smoothed_randomisation(model, x, y, saliency, n_samples=2, seed=3, ids=ids)
    )
    torch.testing.assert_close(scores["model_perturbation"], model_perturbation(model, x, y, saliency, n_samples=2))
    assert [metric_spec(n).higher_is_better for n in NAMES] == [False, False, False, True]
    assert _check_metric_names(list(NAMES)) == list(NAMES)
    metric = build_metric("random_logit")
    metric.update(scores["random_logit"])
    torch.testing.assert_close(metric.compute(), scores["random_logit"].mean())
    with pytest.raises(ValueError, match="order must be one of"):
        check_metric("smoothed_randomisation", order="sideways")
    with pytest.raises(ValueError, match="aggregate must be one of"):
        check_metric("independent_randomisation", aggregate="none")  # per example: one number
    with pytest.raises(ValueError, match="sigma must be a number"):
        check_metric("model_perturbation", sigma=-1.0)
