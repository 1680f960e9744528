"""The metric registry and the torchmetrics wrappers, in one process."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from attributions import AttributionMethod, Saliency, build_attribution
from metrics import (
    MeanScore,
    PerLayerScores,
    build_metric,
    check_metric,
    compute_metric,
    compute_metrics,
    metric_spec,
)
from metrics.functional import parameter_layers, pass_budget
from tests.metric_cases import CHEAP_OPTIONS, package_metric_names, shapes_batch, tiny_model

METRIC_NAMES = package_metric_names()

REQUIRED = [
    *(f"{s}@{p}" for s in ("topk_intersection", "spearman", "kendall", "cosine") for p in ("noise", "pgd", "topk_attack")),
    "max_sensitivity",
    "avg_sensitivity",
    "local_lipschitz",
    "infidelity",
    "deletion_auc",
    "insertion_auc",
    "sensitivity_n",
    "randomisation",
    "pointing_game",
    "relevance_mass",
    "relevance_rank",
    "spurious_share",
]


class Counting(AttributionMethod):
    """Saliency that counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = Saliency()
        self.calls = 0

    def attribute(self, model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
        self.calls += 1
        return self.inner(model, inputs, target)


def test_every_required_metric_is_registered_with_a_declared_direction() -> None:
    assert set(REQUIRED) <= set(METRIC_NAMES)
    for name in METRIC_NAMES:
        wrapper = build_metric(name)
        assert isinstance(wrapper.higher_is_better, bool), name
        assert wrapper.full_state_update is False
        assert metric_spec(name).higher_is_better == wrapper.higher_is_better


def test_all_metrics_score_every_example() -> None:
    model, data = tiny_model(), shapes_batch(6)
    method = Saliency()
    scores = compute_metrics(METRIC_NAMES, model, data.images, data.labels, method, data.masks, data.spurious_masks, options=CHEAP_OPTIONS)
    layers = len(parameter_layers(model, data.images))
    with torch.no_grad():
        misclassified = model(data.images).argmax(1) != data.labels
    assert misclassified.any() and not misclassified.all()  # the untrained model gets some right
    for name, value in scores.items():
        expected = (6, layers) if name == "randomisation" else (6,)
        assert value.shape == expected, name
        assert value.dtype == torch.float32 and not value.requires_grad
        if name.endswith("@topk_attack"):  # misclassified examples are not attacked: NaN
            assert torch.equal(torch.isnan(value), misclassified), name
        elif name != "spurious_share":  # NaN there for the images without the patch
            assert torch.isfinite(value).all(), name
    has_patch = data.spurious_masks.flatten(1).any(1)
    assert torch.isnan(scores["spurious_share"][~has_patch]).all() and torch.isfinite(scores["spurious_share"][has_patch]).all()


def test_compute_metrics_shares_the_clean_and_perturbed_attributions() -> None:
    model, data = tiny_model(), shapes_batch(4)
    method = Counting()
    names = [f"{s}@noise" for s in ("topk_intersection", "spearman", "kendall", "cosine")]
    together = compute_metrics(names, model, data.images, data.labels, method)
    assert method.calls == 2  # Φ(x) and Φ(x') once each
    for name in names:
        torch.testing.assert_close(compute_metric(name, model, data.images, data.labels, Saliency()), together[name])
    method.calls = 0
    with pass_budget(images=4):  # one sample per call: the batch as given
        compute_metrics(["max_sensitivity", "avg_sensitivity"], model, data.images, data.labels, method)
    assert method.calls == 1 + 10  # the samples are shared by max and avg
    method.calls = 0
    compute_metrics(["max_sensitivity", "avg_sensitivity"], model, data.images, data.labels, method)
    assert method.calls == 1 + 1  # by default the 10 × 4 perturbed images are explained in one call


def test_scores_follow_the_examples_not_the_batch() -> None:
    model, data = tiny_model(), shapes_batch(8)
    method = Saliency()
    perm = torch.tensor([5, 2, 7, 0, 1, 6, 3, 4])
    names = ["spearman@noise", "max_sensitivity", "infidelity", "deletion_auc", "sensitivity_n", "relevance_rank"]
    args = (data.masks, data.spurious_masks)
    whole = compute_metrics(names, model, data.images, data.labels, method, *args, options={n: CHEAP_OPTIONS.get(n, {}) for n in names})
    shuffled = compute_metrics(
        names, model, data.images[perm], data.labels[perm], method, data.masks[perm], data.spurious_masks[perm],
        options={n: CHEAP_OPTIONS.get(n, {}) for n in names}, example_ids=perm,
    )
    for name in names:
        torch.testing.assert_close(shuffled[name], whole[name][perm], rtol=1e-4, atol=1e-5, msg=name)


def test_all_metrics_work_under_inference_mode() -> None:
    # Lightning validates under torch.inference_mode(); the metrics need gradients anyway.
    model, data = tiny_model(), shapes_batch(3)
    expected = compute_metrics(METRIC_NAMES, model, data.images, data.labels, Saliency(), data.masks, data.spurious_masks, options=CHEAP_OPTIONS)
    with torch.inference_mode():
        x, y = data.images.clone(), data.labels.clone()
        got = compute_metrics(METRIC_NAMES, model, x, y, Saliency(), data.masks, data.spurious_masks, options=CHEAP_OPTIONS)
    for name in METRIC_NAMES:
        torch.testing.assert_close(got[name], expected[name], equal_nan=True, msg=name)


def test_default_target_is_the_predicted_class_and_attribution_can_be_given() -> None:
    model, data = tiny_model(), shapes_batch(5)
    with torch.no_grad():
        predicted = model(data.images).argmax(1)
    method = Saliency()
    torch.testing.assert_close(
        compute_metric("deletion_auc", model, data.images, None, method, steps=4),
        compute_metric("deletion_auc", model, data.images, predicted, method, steps=4),
    )
    given = torch.zeros_like(data.images)
    given[:, :, :8] = 1.0  # all relevance in the top half
    mass = compute_metric("relevance_mass", model, data.images, None, method, data.masks, attribution=given)
    top_half = data.masks[:, 0, :8].flatten(1).sum(1) / (8 * 16)  # share of the relevant half inside the mask
    torch.testing.assert_close(mass, top_half.float())


def test_metrics_leave_the_model_as_found() -> None:
    model, data = tiny_model(), shapes_batch(4)
    model.train()
    params = list(model.parameters())
    params[0].grad = torch.ones_like(params[0])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = data.images.clone()
    rng = torch.get_rng_state()
    compute_metrics(METRIC_NAMES, model, x, data.labels, Saliency(), data.masks, data.spurious_masks, options=CHEAP_OPTIONS)
    assert all(m.training for m in model.modules())
    assert torch.equal(params[0].grad, torch.ones_like(params[0])) and all(p.grad is None for p in params[1:])
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # randomisation works on a copy
    assert not x.requires_grad
    assert torch.equal(torch.get_rng_state(), rng)  # seeded draws leave the global stream alone


def test_bad_names_options_and_missing_masks_fail_clearly() -> None:
    model, data = tiny_model(), shapes_batch(2)
    method = Saliency()
    with pytest.raises(ValueError, match="metric must be one of .*spearman@noise"):
        compute_metric("spearman", model, data.images, data.labels, method)
    with pytest.raises(ValueError, match="options of metric 'infidelity' must be among"):
        compute_metric("infidelity", model, data.images, data.labels, method, radius=0.1)
    with pytest.raises(ValueError, match="masks must be given for metric 'pointing_game'"):
        compute_metric("pointing_game", model, data.images, data.labels, method)
    with pytest.raises(ValueError, match="spurious_masks must be given"):
        compute_metric("spurious_share", model, data.images, data.labels, method, data.masks)
    with pytest.raises(ValueError, match="options must only name requested metrics"):
        compute_metrics(["infidelity"], model, data.images, data.labels, method, options={"deletion_auc": {}})
    with pytest.raises(ValueError, match="eps must be a number"):
        check_metric("kendall@pgd", eps=2.0)
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1"):
        check_metric("max_sensitivity", n_samples=0)
    with pytest.raises(ValueError, match="baseline must be one of"):
        check_metric("deletion_auc", baseline="black")
    with pytest.raises(ValueError, match="similarity must be one of"):
        check_metric("randomisation", similarity="pearson")
    assert check_metric("insertion_auc", steps=5) == {"steps": 5, "blur_sigma": 5.0, "seed": 0, "baseline": "blur"}


def test_mean_score_accumulates_and_skips_undefined_scores() -> None:
    metric = build_metric("spearman@noise")
    assert isinstance(metric, MeanScore)
    batches = [torch.tensor([0.5, float("nan"), 0.25]), torch.tensor([1.0]), torch.tensor([float("nan")])]
    for b in batches:
        metric.update(b)
    assert metric.compute().item() == pytest.approx((0.5 + 0.25 + 1.0) / 3)
    assert metric.undefined.item() == 2 and metric.count.item() == 3
    metric.reset()
    metric.update(torch.tensor([float("nan")]))
    assert torch.isnan(metric.compute())
    with pytest.raises(ValueError, match="scores must be a \\(B,\\) tensor"):
        metric.update(torch.zeros(2, 2))


def test_per_layer_scores_average_each_layer() -> None:
    metric = build_metric("randomisation")
    assert isinstance(metric, PerLayerScores)
    metric.update(torch.tensor([[1.0, 0.5], [0.0, float("nan")]]))
    metric.update(torch.tensor([[0.5, 0.25]]))
    torch.testing.assert_close(metric.compute(), torch.tensor([0.5, 0.375]))


def test_every_method_runs_through_the_registry() -> None:
    model, data = tiny_model(), shapes_batch(3)
    for name in ("integrated_gradients", "smoothgrad", "grad_cam", "guided_backprop", "edge", "random"):
        kwargs = {"steps": 4} if name == "integrated_gradients" else {"n_samples": 2} if name == "smoothgrad" else {}
        method = build_attribution(name, **kwargs)
        scores = compute_metrics(
            ["cosine@noise", "deletion_auc", "pointing_game"], model, data.images, data.labels, method, data.masks,
            options={"deletion_auc": {"steps": 3}},
        )
        assert all(s.shape == (3,) for s in scores.values()), name
