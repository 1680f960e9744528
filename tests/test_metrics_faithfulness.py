"""The faithfulness profile: closed forms on linear models, Quantus 0.6 on identical inputs and
perturbations, the authors' ROAD imputation, seeding per example, and bad options."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from attributions import InputXGradient, Saliency
from metrics.functional.faithfulness_profile import (
    explanation_distances,
    faithfulness_correlation,
    irof,
    irof_curve,
    monotonicity,
    monotonicity_correlation,
    road,
    road_curve,
    selectivity,
    selectivity_curve,
    sufficiency,
)
from metrics.functional.imputation import linear_imputation


def tiny_net(size: int = 8, classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.Softplus(beta=5.0), nn.Flatten(), nn.Linear(4 * size * size, classes)
    ).eval()


def linear_net(channels: int = 1, size: int = 6, classes: int = 2, positive: bool = False) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, classes)).eval()
    if positive:
        with torch.no_grad():
            model[1].weight.abs_()
    return model


def evidence_net(size: int) -> nn.Module:
    """Two classes, class 0's logit Σ w_i x_i with w ≥ 0, class 1's logit 0: restoring any pixel
    never lowers p_0, so every order of restoration is monotone."""
    model = linear_net(size=size, positive=True)
    with torch.no_grad():
        model[1].weight[1].zero_()
        model[1].bias.zero_()
    return model


def batch(n: int = 4, size: int = 8, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Images with a 0 pixel each (Quantus's "black" baseline is the image minimum, so it is 0 as
    here), targets, and attributions without ties (a fixed order for both libraries)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, size, size, generator=g)
    x[:, :, 0, 0] = 0.0
    t = torch.randint(0, 3, (n,), generator=g)
    a = torch.randn(n, 1, size, size, generator=g)
    return x, t, a


def numpy(*tensors: Tensor) -> list[np.ndarray]:
    return [t.detach().numpy() for t in tensors]


# ---------------------------------------------------------------------------------------------
# Closed forms


def test_faithfulness_correlation_is_one_for_exact_attributions_of_a_linear_model() -> None:
    # Removing S (to zero) lowers the logit by Σ_{i∈S} w_i x_i, which is what x ⊙ w sums to over S.
    model = linear_net(channels=3)
    x, t = torch.rand(4, 3, 6, 6), torch.tensor([0, 1, 1, 0])
    phi = InputXGradient()(model, x, t)
    for size in (1, 4, 20):
        torch.testing.assert_close(faithfulness_correlation(model, x, t, phi, subset_size=size, n_runs=12), torch.ones(4))
    assert faithfulness_correlation(model, x, t, torch.rand_like(phi), subset_size=4, n_runs=30).abs().max() < 0.9


def test_monotonicity_holds_for_exact_attributions_of_a_linear_model() -> None:
    # With x, w ≥ 0 every restored pixel raises the logit by x_i w_i = Φ_i ≥ 0: monotone whatever the
    # order; the softmax of a two-class model whose other row is zero is monotone in that logit.
    model = evidence_net(size=5)
    x, t = torch.rand(6, 1, 5, 5), torch.zeros(6, dtype=torch.long)
    phi = InputXGradient()(model, x, t)
    for output in ("logit", "probability"):
        torch.testing.assert_close(monotonicity(model, x, t, phi, output=output), torch.ones(6))
    # Class 1's probability falls as class 0's evidence is restored: never monotone.
    assert monotonicity(model, x, torch.ones(6, dtype=torch.long), phi).max() == 0


def test_monotonicity_fails_where_restoring_lowers_the_output() -> None:
    # A signed linear model: restoring a pixel of negative Φ lowers the logit, so the exact map
    # (which the ascending order restores first) is not monotone.
    model = linear_net(size=5)
    x, t = torch.rand(3, 1, 5, 5), torch.tensor([0, 1, 0])
    phi = InputXGradient()(model, x, t)
    assert monotonicity(model, x, t, phi, output="logit").max() == 0


def test_monotonicity_correlation_is_one_for_exact_attributions_of_a_linear_model() -> None:
    # Filling pixel k with 0 changes the logit by −Φ_k, so v_k = Φ_k², a monotone function of |Φ_k|.
    model = linear_net(size=5)
    x, t = torch.rand(3, 1, 5, 5) + 0.1, torch.tensor([0, 1, 0])
    phi = InputXGradient()(model, x, t)
    got = monotonicity_correlation(model, x, t, phi, fill="zero", output="logit")
    torch.testing.assert_close(got, torch.ones(3))
    shuffled = phi.flatten(1)[:, torch.randperm(25)].view_as(phi)
    assert monotonicity_correlation(model, x, t, shuffled, fill="zero", output="logit").max() < 0.9


def test_selectivity_and_irof_rank_a_faithful_map_above_its_reverse() -> None:
    model = linear_net(size=8, positive=True)
    x, t = torch.rand(5, 1, 8, 8), torch.zeros(5, dtype=torch.long)
    phi = InputXGradient()(model, x, t)
    options = {"patch_size": 2, "output": "logit"}
    assert torch.all(selectivity(model, x, t, phi, **options) < selectivity(model, x, t, -phi, **options))
    grid = {"segmentation": "grid", "patch_size": 2, "baseline": "zero", "output": "logit"}
    assert torch.all(irof(model, x, t, phi, **grid) > irof(model, x, t, -phi, **grid))


def test_road_removing_the_most_relevant_pixels_first_hurts_more() -> None:
    # Class 0's evidence is Σ w_i x_i with w ≥ 0: imputing the pixels that carry most of it
    # (MoRF) lowers p_0 more than imputing those that carry least (LeRF).
    model = evidence_net(size=8)
    with torch.no_grad():
        model[1].bias[1] = 0.5 * model(torch.rand(64, 1, 8, 8))[:, 0].mean()  # p_0 near 1/2
    x, t = torch.rand(6, 1, 8, 8), torch.zeros(6, dtype=torch.long)
    phi = InputXGradient()(model, x, t)
    options = {"output": "probability", "percentages": [20, 40, 60]}
    assert torch.all(road(model, x, t, phi, order="morf", **options) < road(model, x, t, phi, order="lerf", **options))


def test_region_curves_start_at_the_clean_image_and_end_fully_removed() -> None:
    model = tiny_net()
    x, t, a = batch()
    curve, counts = selectivity_curve(model, x, t, a, patch_size=4, output="logit")
    assert counts.tolist() == [4] * 4 and curve.shape == (4, 5)
    with torch.no_grad():
        logits = model(x).gather(1, t[:, None]).squeeze(1)
        blank = model(torch.zeros_like(x)).gather(1, t[:, None]).squeeze(1)
    torch.testing.assert_close(curve[:, 0], logits)
    torch.testing.assert_close(curve[:, -1], blank)
    ratio, _ = irof_curve(model, x, t, a, segmentation="grid", patch_size=4)
    torch.testing.assert_close(ratio[:, 0], torch.ones(4))


# ---------------------------------------------------------------------------------------------
# ROAD's imputation


def test_linear_imputation_equals_the_authors_sparse_solve() -> None:
    quantus = pytest.importorskip("quantus")
    from quantus.functions.perturb_func import noisy_linear_imputation  # the authors' code, adapted

    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 9, 11, generator=g, dtype=torch.float64)
    removed = torch.rand(3, 1, 9, 11, generator=g) < torch.tensor([0.1, 0.5, 0.95]).view(3, 1, 1, 1)
    ours = linear_imputation(x, removed)
    for i in range(3):
        indices = np.flatnonzero(removed[i, 0].numpy())
        reference = noisy_linear_imputation(x[i].numpy(), indices, noise=0.0)
        np.testing.assert_allclose(ours[i].numpy(), reference, atol=1e-8)
    assert quantus is not None


def test_imputed_pixels_are_the_weighted_mean_of_their_neighbours() -> None:
    x = torch.rand(2, 1, 7, 7, dtype=torch.float64)
    removed = torch.zeros(2, 1, 7, 7, dtype=torch.bool)
    removed[:, :, 2:5, 2:5] = True
    filled = linear_imputation(x, removed)[:, 0]
    kernel = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]], dtype=torch.float64)
    for i in range(2, 5):
        for j in range(2, 5):  # interior pixels: all eight neighbours inside the image
            torch.testing.assert_close(filled[:, i, j], (filled[:, i - 1 : i + 2, j - 1 : j + 2] * kernel).sum(dim=(1, 2)))
    torch.testing.assert_close(filled[:, 0, 0], x[:, 0, 0, 0])  # kept pixels untouched


# ---------------------------------------------------------------------------------------------
# Quantus 0.6 on identical inputs and perturbations


def test_faithfulness_correlation_equals_quantus(monkeypatch: pytest.MonkeyPatch) -> None:
    # Quantus draws each run's subset with np.random.choice, example by example: record its draws
    # and pass the same subsets here.
    quantus = pytest.importorskip("quantus")
    model = tiny_net()
    x, t, a = batch()
    runs, size = 15, 10
    drawn: list[np.ndarray] = []
    choice = np.random.choice

    def recording_choice(*args: object, **kwargs: object) -> np.ndarray:
        drawn.append(choice(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(np.random, "choice", recording_choice)
    metric = quantus.FaithfulnessCorrelation(
        nr_runs=runs, subset_size=size, abs=False, normalise=False, return_aggregate=False, disable_warnings=True
    )
    reference = metric(model=model, x_batch=x.numpy(), y_batch=t.numpy(), a_batch=a.numpy(), device="cpu")
    assert len(drawn) == runs * 4
    subsets = torch.zeros(runs * 4, 64, dtype=torch.bool)
    for row, chosen in enumerate(drawn):
        subsets[row, torch.from_numpy(chosen)] = True
    ours = faithfulness_correlation(model, x, t, a, subset_size=size, n_runs=runs, subsets=subsets.view(runs, 4, 8, 8))
    np.testing.assert_allclose(ours.numpy(), np.array(reference), atol=1e-5)


def test_monotonicity_equals_quantus_once_its_pixels_are_restored() -> None:
    # Quantus 0.6's Monotonicity "restores" each step's pixels by writing the baseline value into
    # the baseline image, so its curve is flat and every map scores True. Given a perturbation
    # function that copies x's pixels back (AIX360's x_copy[ind] = x[ind]), it equals ours.
    quantus = pytest.importorskip("quantus")
    model = evidence_net(size=8)
    x, _, _ = batch(n=6)
    t = torch.zeros(6, dtype=torch.long)
    a = InputXGradient()(model, x, t) + 1e-3 * torch.randn(6, 1, 8, 8)  # exact up to a little noise
    cases = (a, -a, torch.randn_like(a))
    as_quantus = quantus.Monotonicity(features_in_step=4, abs=False, normalise=False, disable_warnings=True)
    for maps in cases:
        assert all(as_quantus(model=model, x_batch=x.numpy(), y_batch=t.numpy(), a_batch=maps.numpy(), device="cpu"))
    flat_x = x.flatten(1).numpy()

    def restore(arr: np.ndarray, indices: np.ndarray, **kwargs: object) -> np.ndarray:
        rows = np.arange(arr.shape[0])[:, None]
        out = arr.copy()
        out[rows, indices] = flat_x[rows, indices]
        return out

    restoring = quantus.Monotonicity(
        features_in_step=4, abs=False, normalise=False, perturb_func=restore, disable_warnings=True
    )
    seen = set()
    for model_, maps in [(model, m) for m in cases] + [(tiny_net(), m) for m in cases]:
        reference = restoring(model=model_, x_batch=x.numpy(), y_batch=t.numpy(), a_batch=maps.numpy(), device="cpu")
        ours = monotonicity(model_, x, t, maps, pixels_per_step=4)
        assert ours.tolist() == [float(r) for r in reference]
        seen.update(ours.tolist())
    assert seen == {0.0, 1.0}  # both outcomes were compared


@pytest.mark.parametrize("step", [1, 4])
def test_monotonicity_correlation_equals_quantus_with_a_fixed_fill(step: int) -> None:
    # Quantus's fill is one uniform value per example and step; a "black" fill (0 here) makes both
    # deterministic. Its 1/f_t(x)² factor does not change the ranks.
    quantus = pytest.importorskip("quantus")
    model = tiny_net()
    x, t, a = batch()
    metric = quantus.MonotonicityCorrelation(
        nr_samples=2, features_in_step=step, perturb_baseline="black", abs=True, normalise=False, disable_warnings=True
    )
    reference = metric(model=model, x_batch=x.numpy(), y_batch=t.numpy(), a_batch=a.numpy(), device="cpu")
    ours = monotonicity_correlation(model, x, t, a, pixels_per_step=step, fill="zero")
    np.testing.assert_allclose(ours.numpy(), np.array(reference), atol=1e-5)


def test_road_equals_quantus_without_noise() -> None:
    # Quantus's ROAD indexes pixels by attribution elements, so it runs on one channel only.
    quantus = pytest.importorskip("quantus")
    model = tiny_net()
    x, t, a = batch(n=6)
    percentages = [10, 30, 50, 70, 90]
    with torch.no_grad():
        t = model(x).argmax(dim=1)  # start from correct predictions so the curve moves
    metric = quantus.ROAD(percentages=percentages, noise=0.0, abs=False, normalise=False, disable_warnings=True)
    reference = metric(model=model, x_batch=x.numpy(), y_batch=t.numpy(), a_batch=a.numpy(), device="cpu")
    curve = road_curve(model, x, t, a, percentages=percentages, noise_std=0.0)
    assert 0 < curve.mean() < 1  # some predictions flip: the comparison sees both outcomes
    np.testing.assert_allclose(curve.mean(dim=0).numpy(), np.array([reference[p] for p in percentages]), atol=1e-6)
    torch.testing.assert_close(road(model, x, t, a, percentages=percentages, noise_std=0.0), curve.mean(dim=1))


def test_irof_curve_equals_quantus_on_slic_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    # Same SLIC call, same curve; Quantus's area is K − trapz(c_1..c_K) (unit steps, unperturbed
    # point left out), and np.trapz is gone from NumPy 2.4, so it is restored for Quantus here.
    quantus = pytest.importorskip("quantus")
    pytest.importorskip("skimage")
    monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    model = tiny_net(size=16)
    x, t, a = batch(n=3, size=16)
    curve, counts = irof_curve(model, x, t, a, baseline="zero")  # SLIC's defaults, as Quantus
    metric = quantus.IROF(abs=False, normalise=False, perturb_baseline="black", return_aggregate=False, disable_warnings=True)
    for i in range(3):  # one example per call: Quantus pads batches of unequal K into its area
        k = int(counts[i])
        assert k > 1
        reference = metric(model=model, x_batch=x[i : i + 1].numpy(), y_batch=t[i : i + 1].numpy(), a_batch=a[i : i + 1].numpy(), device="cpu")
        assert reference[0] == pytest.approx(k - float(np.trapezoid(curve[i, 1 : k + 1].numpy(), dx=1)), abs=1e-4)  # Quantus sums K float32 ratios
    ours = irof(model, x, t, a, baseline="zero")
    for i in range(3):  # 1 − the area under c_0..c_K on a [0, 1] axis
        k = int(counts[i])
        area = float(np.trapezoid(curve[i, : k + 1].numpy(), dx=1.0 / k))
        assert ours[i].item() == pytest.approx(1.0 - area, abs=1e-6)


def test_selectivity_curve_equals_quantus() -> None:
    quantus = pytest.importorskip("quantus")
    pytest.importorskip("skimage")  # Quantus cuts its patches with skimage.util.view_as_blocks
    model = tiny_net()
    x, t, a = batch()
    metric = quantus.Selectivity(patch_size=4, abs=False, normalise=False, return_aggregate=False, disable_warnings=True)
    reference = metric(model=model, x_batch=x.numpy(), y_batch=t.numpy(), a_batch=a.numpy(), device="cpu")
    curve, _ = selectivity_curve(model, x, t, a, patch_size=4)
    np.testing.assert_allclose(curve[:, 1:].numpy(), np.array(reference), atol=1e-6)


def test_sufficiency_equals_quantus() -> None:
    quantus = pytest.importorskip("quantus")
    model = tiny_net(classes=2)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(10, 1, 8, 8, generator=g)
    base = torch.randn(2, 1, 8, 8, generator=g)
    a = base[torch.arange(10) % 2] + 0.3 * torch.randn(10, 1, 8, 8, generator=g)  # two clusters of maps
    t = torch.zeros(10, dtype=torch.long)
    for threshold in (0.3, 0.6, 0.9):
        metric = quantus.Sufficiency(threshold=threshold, abs=False, normalise=False, disable_warnings=True)
        reference = metric(model=model, x_batch=x.numpy(), y_batch=t.numpy(), a_batch=a.numpy(), device="cpu")
        ours = sufficiency(model, x, t, a, threshold=threshold)
        np.testing.assert_allclose(ours.numpy(), np.array(reference, dtype=np.float64), atol=1e-6)


def test_standardised_distance_equals_scipy() -> None:
    scipy_distance = pytest.importorskip("scipy.spatial.distance")
    maps = torch.randn(6, 5, 4, dtype=torch.float64)
    flat = maps.flatten(1).numpy()
    expected = scipy_distance.cdist(flat, flat, "seuclidean", V=flat.var(axis=0, ddof=1))
    np.testing.assert_allclose(explanation_distances(maps).numpy(), expected, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# Seeding and bad input


def test_scores_follow_the_example_not_the_batch() -> None:
    model = tiny_net()
    x, t, a = batch(n=5)
    ids = torch.tensor([10, 11, 12, 13, 14])
    perm = torch.tensor([3, 0, 4, 1, 2])
    a[:, :, :4] = a[:, :, :4].round()  # ties: the random tie-breaks must follow the example too
    for metric, options in (
        (faithfulness_correlation, {"n_runs": 8}),
        (monotonicity_correlation, {"n_samples": 2, "pixels_per_step": 8}),
        (road, {"percentages": [20, 60], "output": "probability"}),
        (selectivity, {"patch_size": 2}),
        (monotonicity, {"pixels_per_step": 2}),
    ):
        whole = metric(model, x, t, a, ids=ids, seed=7, **options)
        moved = metric(model, x[perm], t[perm], a[perm], ids=ids[perm], seed=7, **options)
        torch.testing.assert_close(moved, whole[perm], msg=metric.__name__)
    other_seed = road(model, x, t, a, ids=ids, seed=8, percentages=[20, 60], output="probability")
    assert not torch.equal(other_seed, road(model, x, t, a, ids=ids, seed=7, percentages=[20, 60], output="probability"))


@pytest.mark.parametrize(
    ("metric", "options", "field"),
    [
        (faithfulness_correlation, {"subset_size": 0}, "subset_size"),
        (faithfulness_correlation, {"n_runs": 0}, "n_runs"),
        (monotonicity, {"output": "margin"}, "output"),
        (monotonicity, {"pixels_per_step": 0}, "pixels_per_step"),
        (monotonicity_correlation, {"fill": "gaussian"}, "fill"),
        (road, {"order": "random"}, "order"),
        (road, {"percentages": [50, 100]}, "percentages"),
        (road, {"output": "logit"}, "output"),
        (irof, {"segmentation": "quickshift"}, "segmentation"),
        (selectivity, {"patch_size": 0}, "patch_size"),
        (sufficiency, {"threshold": 1.5}, "threshold"),
        (sufficiency, {"distance": "cosine"}, "distance"),
    ],
)
def test_bad_options_name_the_field(metric, options, field) -> None:  # type: ignore[no-untyped-def]
    model = tiny_net()
    x, t, a = batch(n=2)
    with pytest.raises(ValueError, match=field):
        metric(model, x, t, a, **options)


def test_slic_without_scikit_image_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "skimage.segmentation", None)
    x, t, a = batch(n=2)
    with pytest.raises(ValueError, match="scikit-image.*segmentation='grid'"):
        irof(tiny_net(), x, t, a)


# ---------------------------------------------------------------------------------------------
# As registered metrics: by name, from the report's list, options checked, two processes

PROFILE_NAMES = ("faithfulness_correlation", "monotonicity", "monotonicity_correlation", "road_morf", "road_lerf", "irof", "selectivity")


def test_each_metric_by_name_equals_its_function_and_states_its_direction() -> None:
    from metrics import compute_metrics, metric_spec
    from tests.metric_cases import CHEAP_OPTIONS, shapes_batch, tiny_model

    model, data, method = tiny_model(), shapes_batch(6), Saliency()
    x, y, ids = data.images, data.labels, torch.arange(100, 106)
    options = {name: CHEAP_OPTIONS[name] for name in PROFILE_NAMES}
    scores = compute_metrics(PROFILE_NAMES, model, x, y, method, options=options, example_ids=ids)
    phi = method(model, x, y)
    functions = {
        "faithfulness_correlation": faithfulness_correlation,
        "monotonicity": monotonicity,
        "monotonicity_correlation": monotonicity_correlation,
        "road_morf": lambda *a, **o: road(*a, order="morf", **o),
        "road_lerf": lambda *a, **o: road(*a, order="lerf", **o),
        "irof": irof,
        "selectivity": selectivity,
    }
    for name in PROFILE_NAMES:
        expected = functions[name](model, x, y, phi, ids=ids, **CHEAP_OPTIONS[name])
        torch.testing.assert_close(scores[name], expected, equal_nan=True, msg=name)
    directions = {name: metric_spec(name).cls.higher_is_better for name in PROFILE_NAMES}
    assert directions == {
        "faithfulness_correlation": True, "monotonicity": True, "monotonicity_correlation": True,
        "road_morf": False, "road_lerf": True, "irof": True, "selectivity": False,
    }  # fmt: skip


def test_the_report_accepts_the_names_and_its_evaluation_core_scores_them_batch_by_batch() -> None:
    # The report checks its metric list against the registry, then scores through the evaluation
    # core; per-example draws make two batches of 3 equal one batch of 6.
    from evaluation.explanation_scores import explanation_scores
    from metrics import compute_metrics
    from report.plan import _check_metric_names
    from tests.metric_cases import CHEAP_OPTIONS, shapes_batch, tiny_model

    assert _check_metric_names(list(PROFILE_NAMES)) == list(PROFILE_NAMES)
    model, data = tiny_model(), shapes_batch(6)
    ids = torch.arange(6)
    options = {name: CHEAP_OPTIONS[name] for name in PROFILE_NAMES}
    _, columns = explanation_scores(model, {"saliency": Saliency()}, PROFILE_NAMES, data.images, data.labels, ids, options=options, batch_size=3)
    whole = compute_metrics(PROFILE_NAMES, model, data.images, data.labels, Saliency(), options=options, example_ids=ids)
    for name in PROFILE_NAMES:
        torch.testing.assert_close(columns["saliency"][name], whole[name], equal_nan=True, msg=name)


@pytest.mark.parametrize(
    ("name", "options", "field"),
    [
        ("faithfulness_correlation", {"n_runs": 1}, "n_runs"),
        ("monotonicity", {"output": "margin"}, "output"),
        ("monotonicity_correlation", {"fill": "gaussian"}, "fill"),
        ("road_morf", {"percentages": [50, 100]}, "percentages"),
        ("road_lerf", {"noise_std": -0.1}, "noise_std"),
        ("irof", {"segmentation": "quickshift"}, "segmentation"),
        ("selectivity", {"patch_size": 0}, "patch_size"),
    ],
)
def test_bad_metric_options_fail_at_construction_naming_the_field(name: str, options: dict, field: str) -> None:
    from metrics import build_metric

    with pytest.raises(ValueError, match=field):
        build_metric(name, **options)


def test_irof_with_slic_but_no_scikit_image_fails_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    from metrics import build_metric

    monkeypatch.setitem(sys.modules, "skimage.segmentation", None)
    with pytest.raises(ValueError, match="scikit-image"):
        build_metric("irof")
    build_metric("irof", segmentation="grid")  # no dependency


N_DDP = 10


def _road_share(model: nn.Module, data: dict[str, Tensor], share: slice) -> dict[str, Tensor]:
    from metrics import build_metric, compute_metrics

    scores = compute_metrics(
        ["road_morf"], model, data["images"][share], data["labels"][share], Saliency(),
        options={"road_morf": {"percentages": (20, 60), "output": "probability"}}, example_ids=torch.arange(N_DDP)[share],
    )  # fmt: skip
    metric = build_metric("road_morf", percentages=(20, 60), output="probability")
    metric.update(scores["road_morf"])
    return {"value": metric.compute(), "scores": scores["road_morf"]}


def _road_rank_main(rank: int, world_size: int, model: nn.Module, data: dict[str, Tensor]) -> dict[str, Tensor]:
    from tests.ddp import split_sizes

    sizes = split_sizes(N_DDP, world_size)
    start = sum(sizes[:rank])
    return _road_share(model, data, slice(start, start + sizes[rank]))


@pytest.mark.slow  # two spawned processes; the default suite's test_metrics_ddp covers every metric of the package
def test_road_reduces_across_two_processes_as_in_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.ddp import run_distributed
    from tests.metric_cases import shapes_batch, tiny_model

    shapes = shapes_batch(N_DDP)
    model, data = tiny_model(), {k: getattr(shapes, k) for k in ("images", "labels")}
    single = _road_share(model, data, slice(0, N_DDP))
    ranks = run_distributed(_road_rank_main, tmp_path, world_size=2, args=(model, data))
    torch.testing.assert_close(torch.cat([r["scores"] for r in ranks]), single["scores"])  # noise follows the example
    for result in ranks:
        torch.testing.assert_close(result["value"], single["value"], rtol=1e-6, atol=1e-7)
