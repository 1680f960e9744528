"""Relative stability, continuity and consistency: closed forms and Quantus 0.6 on identical perturbations."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from attributions import AttributionMethod, InputXGradient, Saliency
from metrics.functional.stability import (
    consistency,
    consistency_from_codes,
    continuity,
    explanation_codes,
    relative_stability,
    translate,
    translation_shifts,
)
from tests.tiny import shapes_batch, tiny_cnn


class Fixed(AttributionMethod):
    """The same attribution whatever the input."""

    uses_model = False

    def __init__(self, value: Tensor) -> None:
        super().__init__(model_mode=None)
        self.value = value

    def attribute(self, model: nn.Module, inputs: Tensor, target: Tensor | None) -> Tensor:  # type: ignore[override]
        return self.value


def linear_model(d: int = 16, classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, classes)).eval()
    with torch.no_grad():
        model[1].weight.add_(torch.sign(model[1].weight) * 0.1)  # no zero weight
    return model


def explainer(method: AttributionMethod) -> Callable[..., np.ndarray]:
    def explain(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: object) -> np.ndarray:
        return method(model, torch.as_tensor(inputs), torch.as_tensor(targets)).detach().numpy()

    return explain


def replay(perturbations: Tensor, x: Tensor) -> Callable[..., np.ndarray]:
    """A Quantus perturb_func returning x + δ_j on its j-th call."""
    calls = iter(range(perturbations.shape[0]))

    def perturb(arr: np.ndarray, **_: object) -> np.ndarray:
        return (x + perturbations[next(calls)]).reshape(arr.shape).numpy()

    return perturb


# ---------------------------------------------------------------------------------------------
# Relative stability


def test_relative_input_stability_of_input_x_gradient_on_a_linear_model_is_one() -> None:
    """Φ = W_t ⊙ x, so (Φ − Φ')/Φ = (x − x')/x elementwise: RIS = 1 exactly (no zero pixel or weight)."""
    model = linear_model()
    x = 0.2 + 0.6 * torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 1, 2, 0, 1])
    scores = relative_stability(model, x, t, InputXGradient(), radius=0.01, n_samples=4)
    assert torch.allclose(scores["input"], torch.ones(5, dtype=torch.float64), atol=1e-5)
    still = relative_stability(model, x, t, Saliency(abs=False), radius=0.01, n_samples=4)  # Φ = W_t, constant
    assert all(v.abs().max().item() == 0.0 for v in still.values())


def test_label_changing_samples_are_left_out_and_all_changed_is_nan() -> None:
    model = linear_model()
    x = 0.2 + 0.6 * torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 1, 2])
    delta = torch.full((3, 3, 1, 4, 4), 1e-3)
    with torch.no_grad():
        flip = -3.0 * model[1].weight[model(x).argmax(dim=1)].view(3, 1, 4, 4)  # pushes away from the prediction
    delta[1, 0] = flip[0]  # sample 1 flips example 0: left out
    delta[:, 2] = flip[2]  # every sample flips example 2: NaN
    method = InputXGradient()
    scores = relative_stability(model, x, t, method, n_samples=3, perturbations=delta)
    kept = relative_stability(model, x[:1], t[:1], method, n_samples=2, perturbations=delta[[0, 2], :1])
    for kind in scores:
        assert torch.allclose(scores[kind][0], kept[kind][0], rtol=1e-4)
        assert math.isnan(scores[kind][2].item()) and not math.isnan(scores[kind][1].item())


def test_relative_stability_noise_is_keyed_by_example() -> None:
    model = tiny_cnn(size=8).eval()
    x, y = shapes_batch(5, size=8)
    full = relative_stability(model, x, y, Saliency(), n_samples=3, seed=4)
    part = relative_stability(model, x[[3, 1]], y[[3, 1]], Saliency(), n_samples=3, seed=4, ids=torch.tensor([3, 1]))
    other_seed = relative_stability(model, x, y, Saliency(), n_samples=3, seed=5)
    for kind in full:
        assert torch.allclose(full[kind][[3, 1]], part[kind])
        assert not torch.allclose(full[kind], other_seed[kind])


def test_relative_stability_equals_quantus_on_the_same_perturbations() -> None:
    quantus = pytest.importorskip("quantus")
    model = tiny_cnn(size=8).eval()
    x, y = shapes_batch(6, size=8)
    n = 4
    delta = 0.01 * (2 * torch.rand(n, *x.shape, generator=torch.Generator().manual_seed(2)) - 1)
    method = Saliency(abs=False)
    phi = method(model, x, y)
    ours = relative_stability(model, x, y, method, attribution=phi, n_samples=n, perturbations=delta)
    default = relative_stability(model, x, y, method, attribution=phi, n_samples=n, perturbations=delta, layer="net.classifier.2")
    assert torch.equal(ours["representation"], default["representation"])  # the penultimate by default
    metrics = {
        "input": (quantus.RelativeInputStability, {}),
        "output": (quantus.RelativeOutputStability, {}),
        "representation": (quantus.RelativeRepresentationStability, {"layer_names": ["net.classifier.2"]}),
    }
    for kind, (cls, options) in metrics.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = cls(nr_samples=n, perturb_func=replay(delta, x), disable_warnings=True, **options)(
                model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=phi.detach().numpy(), channel_first=True,
                device="cpu", explain_func=explainer(method),
            )
        assert not np.isnan(q).any()  # no label changed, so Quantus's NaN rule does not apply
        assert np.allclose(ours[kind].numpy(), np.asarray(q, dtype=np.float64), rtol=1e-4), kind


# ---------------------------------------------------------------------------------------------
# Continuity


def test_translation_schedule_and_translate() -> None:
    assert translation_shifts(28, 28) == [s for s in range(-26, 29, 2) if s != 0]
    row = torch.arange(1.0, 6.0).view(1, 1, 1, 5)
    assert translate(row, 2).flatten().tolist() == [0, 0, 1, 2, 3]
    assert translate(row, -2).flatten().tolist() == [3, 4, 5, 0, 0]
    assert translate(row, 5).abs().sum() == 0
    assert translate(row, 2, fill="min").flatten().tolist() == [1, 1, 1, 2, 3]
    with pytest.raises(ValueError, match="n_steps"):
        translation_shifts(4, 10)


def test_continuity_of_a_constant_explanation_is_zero() -> None:
    model = tiny_cnn(size=8).eval()
    x, y = shapes_batch(3, size=8)
    fixed = Fixed(torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    assert continuity(model, x, y, fixed).abs().max().item() == 0.0
    assert continuity(model, x, y, Saliency()).min().item() > 0


def test_continuity_equals_quantus() -> None:
    quantus = pytest.importorskip("quantus")
    model = tiny_cnn(size=8).eval()
    x, y = shapes_batch(5, size=8)
    method = InputXGradient()
    ours = continuity(model, x, y, method, n_steps=8, normalise=False, fill="min")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantus.Continuity(nr_steps=8, normalise=False, disable_warnings=True)(
            model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=None, channel_first=True, device="cpu",
            explain_func=explainer(method),
        )
    assert np.allclose(ours.numpy(), np.asarray(q, dtype=np.float64), rtol=1e-4)
    assert (x.flatten(1).min(dim=1).values > 0).any()  # the fill matters on these images
    scaled = continuity(model, x, y, Fixed(3.0 * method(model, x, y)), n_steps=8, normalise=True)
    assert scaled.abs().max().item() == 0.0


# ---------------------------------------------------------------------------------------------
# Consistency


def test_consistency_from_codes_by_hand() -> None:
    codes = torch.tensor([[1, 2], [1, 2], [1, 2], [3, 4], [3, 4], [5, 6]])
    predictions = torch.tensor([0, 0, 1, 2, 3, 4])
    scores = consistency_from_codes(codes, predictions)
    assert scores[:5].tolist() == [0.5, 0.5, 0.0, 0.0, 0.0]
    assert math.isnan(scores[5].item())


def test_explanation_codes_are_the_signed_top_k_set() -> None:
    a = torch.zeros(2, 2, 2, 3)
    a[0, 0, 0, 1], a[0, 1, 1, 2] = 3.0, -2.0  # pixels 1 (+) and 5 (−)
    a[1, 1, 1, 2], a[1, 0, 0, 1] = -5.0, 4.0  # same pixels and signs, other channels and sizes
    codes = explanation_codes(a, k=2)
    assert codes.tolist() == [[-6, 2], [-6, 2]]
    assert not torch.equal(explanation_codes(-a, k=2)[0], codes[0])


def test_consistency_equals_quantus_where_defined() -> None:
    quantus = pytest.importorskip("quantus")
    model = tiny_cnn(size=4).eval()
    x, y = shapes_batch(24, size=4)
    phi = InputXGradient()(model, x, y)
    k = 1

    def discretise(a: np.ndarray, **_: object) -> bytes:  # the same code, from Quantus's flattened map
        return explanation_codes(torch.from_numpy(np.asarray(a)).view(1, 1, 4, 4), k).numpy().tobytes()

    ours = consistency(model, x, y, phi, k=k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = np.asarray(
            quantus.Consistency(discretise_func=discretise, abs=False, normalise=False, disable_warnings=True)(
                model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=phi.detach().numpy(), channel_first=True,
                device="cpu", batch_size=24,
            ),
            dtype=np.float64,
        )
    defined = ~torch.isnan(ours)
    assert defined.sum() >= 6 and (~defined).any()  # both cases occur
    assert np.allclose(ours[defined].numpy(), q[defined.numpy()], atol=1e-8)
    assert (q[~defined.numpy()] == 0).all()  # Quantus: 0 without a partner (documented)


# ---------------------------------------------------------------------------------------------
# By name, and under DDP

N = 6
STABILITY_NAMES = ["relative_input_stability", "relative_output_stability", "relative_representation_stability"]


def test_robustness_metrics_by_name_equal_the_functions_and_check_their_options() -> None:
    from metrics import build_metric, compute_metrics, metric_spec
    from report.plan import _check_metric_names

    model = tiny_cnn(size=8).eval()
    x, y = shapes_batch(5, size=8)
    method = Saliency()
    ids = torch.arange(10, 15)
    names = [*STABILITY_NAMES, "continuity"]
    options = {name: {"n_samples": 3, "seed": 2} for name in STABILITY_NAMES}
    scores = compute_metrics(names, model, x, y, method, options=options, example_ids=ids)
    direct = relative_stability(model, x, y, method, n_samples=3, seed=2, ids=ids)
    for name, kind in zip(STABILITY_NAMES, ("input", "output", "representation")):
        torch.testing.assert_close(scores[name], direct[kind].float(), equal_nan=True)
    torch.testing.assert_close(scores["continuity"], continuity(model, x, y, method).float())
    assert _check_metric_names(names) == names
    assert all(metric_spec(n).higher_is_better is False for n in names)
    for name, bad, field in (
        ("relative_input_stability", {"radius": 0.0}, "radius"),
        ("relative_representation_stability", {"layer": 3}, "layer"),
        ("continuity", {"fill": "black"}, "fill"),
    ):
        with pytest.raises(ValueError, match=field):
            build_metric(name, **bad)


def _stability_share(model: nn.Module, x: Tensor, y: Tensor, share: slice) -> dict[str, Tensor]:
    from metrics import build_metric, compute_metrics

    ids = torch.arange(N)[share]
    options = {name: {"n_samples": 2} for name in STABILITY_NAMES}
    scores = compute_metrics(STABILITY_NAMES, model, x[share], y[share], Saliency(), options=options, example_ids=ids)
    out = {}
    for name, values in scores.items():
        metric = build_metric(name, n_samples=2)
        metric.update(values[:1])
        metric.update(values[1:])
        out[name] = metric.compute()
        with metric.sync_context():
            out[name + "/count"] = metric.count.clone()
    return out


def _stability_rank(rank: int, world_size: int, model: nn.Module, x: Tensor, y: Tensor) -> dict[str, Tensor]:
    from tests.ddp import split_sizes

    sizes = split_sizes(N, world_size)
    start = sum(sizes[:rank])
    return _stability_share(model, x, y, slice(start, start + sizes[rank]))


@pytest.mark.slow  # two spawned processes
def test_relative_stability_in_two_processes_equals_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.ddp import run_distributed

    model = tiny_cnn(size=8).eval()
    x, y = shapes_batch(N, size=8)
    single = _stability_share(model, x, y, slice(0, N))
    assert int(single["relative_input_stability/count"]) == N
    for result in run_distributed(_stability_rank, tmp_path, world_size=2, args=(model, x, y)):
        for name, value in single.items():
            torch.testing.assert_close(result[name], value, rtol=1e-5, atol=1e-6, msg=name)
