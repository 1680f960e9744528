"""Metric functions against scipy, direct loops, closed forms and hand counts."""

from __future__ import annotations

import pytest
import scipy.stats
import torch
from torch import Tensor, nn

from attributions import AttributionMethod, InputXGradient, Saliency
from common.example_noise import example_noise
from common.filters import gaussian_kernel1d
from common.similarity import average_ranks, cosine, kendall, pearson, spearman, topk_intersection
from metrics.functional import (
    avg_sensitivity,
    curve_auc,
    deletion_auc,
    infidelity,
    insertion_auc,
    local_lipschitz,
    max_sensitivity,
    perturbation_curve,
    pointing_game,
    relevance_mass,
    relevance_rank,
    sensitivity_n,
    spurious_share,
    ssim,
)


class Fixed(AttributionMethod):
    """Returns a given attribution whatever the input (to pin an ordering)."""

    uses_model = False

    def __init__(self, value: Tensor) -> None:
        super().__init__(model_mode=None)
        self.value = value

    def attribute(self, model: nn.Module, inputs: Tensor, target: Tensor | None) -> Tensor:  # type: ignore[override]
        return self.value


def tiny_net(channels: int = 1, size: int = 8, classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1),
        nn.Softplus(beta=5.0),
        nn.Flatten(),
        nn.Linear(4 * size * size, classes),
    ).eval()


def linear_net(channels: int = 1, size: int = 6, classes: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, classes)).eval()


def logit(model: nn.Module, x: Tensor, t: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x).gather(1, t[:, None]).squeeze(1)


# ---------------------------------------------------------------------------------------------
# Similarities


def paired_maps() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(7, 6, 9, generator=g)
    b = a + 0.6 * torch.rand(7, 6, 9, generator=g)
    a[0:3] = torch.round(a[0:3] * 4)  # heavy ties in a
    b[1:4] = torch.round(b[1:4] * 3)  # and in b
    b[5] = -a[5]  # perfectly reversed
    b[6] = torch.rand(6, 9, generator=g)  # unrelated
    return a, b


def test_rank_statistics_equal_scipy() -> None:
    a, b = paired_maps()
    rho, tau, r = spearman(a, b), kendall(a, b), pearson(a, b)
    for i in range(a.shape[0]):
        ai, bi = a[i].flatten().double().numpy(), b[i].flatten().double().numpy()
        assert rho[i].item() == pytest.approx(scipy.stats.spearmanr(ai, bi).statistic, abs=1e-6)
        assert tau[i].item() == pytest.approx(scipy.stats.kendalltau(ai, bi).statistic, abs=1e-6)
        assert r[i].item() == pytest.approx(scipy.stats.pearsonr(ai, bi).statistic, abs=1e-6)
        torch.testing.assert_close(average_ranks(a.flatten(1))[i], torch.from_numpy(scipy.stats.rankdata(ai)))


@pytest.mark.parametrize("n", [2, 3, 5, 64, 100])
def test_kendall_handles_any_length(n: int) -> None:
    g = torch.Generator().manual_seed(n)
    a, b = torch.randint(0, 4, (3, n), generator=g).float(), torch.rand(3, n, generator=g)
    tau = kendall(a, b)
    for i in range(3):
        expected = scipy.stats.kendalltau(a[i].numpy(), b[i].numpy()).statistic
        if expected != expected:  # NaN
            assert torch.isnan(tau[i])
        else:
            assert tau[i].item() == pytest.approx(expected, abs=1e-6)


def test_rank_correlations_of_a_constant_map_are_undefined() -> None:
    a, b = torch.ones(2, 4, 4), torch.rand(2, 4, 4)
    assert torch.isnan(spearman(a, b)).all() and torch.isnan(kendall(a, b)).all()
    assert torch.isnan(kendall(torch.rand(2, 1), torch.rand(2, 1))).all()  # a single feature has no pair


def test_topk_intersection_identical_maps_and_a_hand_count() -> None:
    a = torch.rand(3, 5, 5)
    assert torch.equal(topk_intersection(a, a, 7), torch.ones(3))
    first = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    second = torch.tensor([[0.0, 4.0, 3.0, 5.0, 1.0, 2.0]])
    # top-3 of first: {0, 1, 2}; of second: {3, 1, 2}; shared {1, 2}.
    assert topk_intersection(first, second, 3).item() == pytest.approx(2 / 3)
    assert topk_intersection(first, second, 1).item() == 0.0
    assert topk_intersection(first, second, 6).item() == 1.0
    with pytest.raises(ValueError, match="k must be in"):
        topk_intersection(first, second, 7)


def test_cosine_matches_torch() -> None:
    a, b = paired_maps()
    torch.testing.assert_close(cosine(a, b), torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1)))


def test_ssim_equals_a_direct_window_loop() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 12, 13, generator=g)
    b = 0.5 * a + 0.5 * torch.rand(2, 12, 13, generator=g)
    k = gaussian_kernel1d(1.5, radius=5).double()
    window = k[:, None] * k[None, :]  # (11, 11)
    c1, c2 = 0.01**2, 0.03**2
    for i in range(2):
        x = (a[i] - a[i].min()) / (a[i].max() - a[i].min())
        y = (b[i] - b[i].min()) / (b[i].max() - b[i].min())
        x, y = x.double(), y.double()
        values = []
        for r in range(12 - 10):
            for c in range(13 - 10):
                px, py = x[r : r + 11, c : c + 11], y[r : r + 11, c : c + 11]
                mx, my = (window * px).sum(), (window * py).sum()
                vx = (window * px * px).sum() - mx**2
                vy = (window * py * py).sum() - my**2
                cxy = (window * px * py).sum() - mx * my
                values.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
        assert ssim(a, b)[i].item() == pytest.approx(torch.stack(values).mean().item(), abs=1e-6)
    torch.testing.assert_close(ssim(a, a), torch.ones(2))
    torch.testing.assert_close(ssim(a, b), ssim(b, a))


# ---------------------------------------------------------------------------------------------
# Sensitivity, local Lipschitz, infidelity: equal to a direct loop over examples and samples


@pytest.mark.parametrize("relative", [True, False])
def test_sensitivity_and_lipschitz_equal_a_direct_loop(relative: bool) -> None:
    model, method = tiny_net(), Saliency(abs=False)
    g = torch.Generator().manual_seed(1)
    x, t = torch.rand(4, 1, 8, 8, generator=g), torch.tensor([0, 1, 2, 0])
    n = 3
    deltas = (2 * torch.rand(n, 4, 1, 8, 8, generator=g) - 1) * 0.05
    expected_max, expected_avg, expected_lip = [], [], []
    for i in range(4):
        phi = method(model, x[i : i + 1], t[i : i + 1])
        norms, ratios = [], []
        for j in range(n):
            moved = method(model, x[i : i + 1] + deltas[j, i : i + 1], t[i : i + 1])
            diff = (moved - phi).norm()
            norms.append(diff / phi.norm() if relative else diff)
            ratios.append(diff / deltas[j, i].norm())
        expected_max.append(max(norms))
        expected_avg.append(sum(norms) / n)
        expected_lip.append(max(ratios))
    options = {"n_samples": n, "perturbations": deltas, "relative": relative}
    torch.testing.assert_close(max_sensitivity(model, x, t, method, **options), torch.stack(expected_max), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(avg_sensitivity(model, x, t, method, **options), torch.stack(expected_avg), rtol=1e-4, atol=1e-6)
    lipschitz = local_lipschitz(model, x, t, method, n_samples=n, perturbations=deltas)
    torch.testing.assert_close(lipschitz, torch.stack(expected_lip), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("normalize", [True, False])
def test_infidelity_equals_a_direct_loop(normalize: bool) -> None:
    model, method = tiny_net(), InputXGradient()
    g = torch.Generator().manual_seed(2)
    x, t = torch.rand(4, 1, 8, 8, generator=g), torch.tensor([2, 1, 0, 2])
    n = 5
    noise = 0.1 * torch.randn(n, 4, 1, 8, 8, generator=g)
    expected = []
    for i in range(4):
        phi = method(model, x[i : i + 1], t[i : i + 1]).double()
        a = torch.stack([(noise[j, i].double() * phi[0]).sum() for j in range(n)])
        b = torch.stack(
            [(logit(model, x[i : i + 1], t[i : i + 1]) - logit(model, x[i : i + 1] - noise[j, i : i + 1], t[i : i + 1]))[0].double() for j in range(n)]
        )
        if normalize:
            a = a * (a * b).mean() / (a * a).mean()
        expected.append(((a - b) ** 2).mean())
    got = infidelity(model, x, t, method, n_samples=n, normalize=normalize, perturbations=noise)
    torch.testing.assert_close(got, torch.stack(expected).float(), rtol=1e-4, atol=1e-7)


def test_gradient_has_zero_infidelity_on_a_linear_model() -> None:
    # f(x) − f(x − I) = w_tᵀ I = Iᵀ ∇f exactly.
    model = linear_net()
    x, t = torch.rand(3, 1, 6, 6), torch.tensor([0, 1, 0])
    scores = infidelity(model, x, t, Saliency(abs=False), n_samples=8, normalize=False)
    assert scores.max() < 1e-9


# ---------------------------------------------------------------------------------------------
# Deletion, insertion, Sensitivity-n


def test_perturbation_curves_equal_a_direct_loop() -> None:
    model = tiny_net()
    g = torch.Generator().manual_seed(3)
    x, t = torch.rand(2, 1, 8, 8, generator=g), torch.tensor([1, 2])
    relevance = torch.randn(2, 1, 8, 8, generator=g)  # distinct values: no ties, a fixed order
    steps = 4
    for mode in ("deletion", "insertion"):
        curve = perturbation_curve(model, x, t, relevance, mode, steps=steps, baseline="zero")
        for i in range(2):
            order = relevance[i].flatten().argsort(descending=True)
            for s in range(steps + 1):
                chosen = torch.zeros(64, dtype=torch.bool)
                chosen[order[: s * 64 // steps]] = True
                chosen = chosen.view(1, 1, 8, 8)
                image = torch.where(chosen, 0.0, x[i : i + 1]) if mode == "deletion" else torch.where(chosen, x[i : i + 1], 0.0)
                with torch.no_grad():
                    p = model(image).softmax(1)[0, t[i]]
                assert curve[i, s].item() == pytest.approx(p.item(), abs=1e-6)
    assert curve_auc(torch.tensor([[1.0, 0.5, 0.0]])).item() == pytest.approx(0.5)


def test_deletion_and_insertion_order_a_faithful_map_above_its_reverse() -> None:
    model = linear_net(classes=2)
    x, t = torch.rand(8, 1, 6, 6), torch.randint(0, 2, (8,))
    phi = InputXGradient()(model, x, t)
    # Most relevant first makes the target probability fall fastest (deletion) / rise fastest (insertion).
    assert torch.all(deletion_auc(model, x, t, phi, steps=9) < deletion_auc(model, x, t, -phi, steps=9))
    assert torch.all(insertion_auc(model, x, t, phi, steps=9, baseline="zero") > insertion_auc(model, x, t, -phi, steps=9, baseline="zero"))


def test_sensitivity_n_is_one_for_input_x_gradient_on_a_linear_model() -> None:
    # Removing S (to zero) changes the logit by Σ_{i∈S} w_i x_i, which is what x ⊙ w sums to.
    model = linear_net(channels=3)
    x, t = torch.rand(4, 3, 6, 6), torch.tensor([0, 1, 1, 0])
    phi = InputXGradient()(model, x, t)
    for n in (1, 5, 20):
        torch.testing.assert_close(sensitivity_n(model, x, t, phi, n=n, n_subsets=12), torch.ones(4))
    noise = torch.rand_like(phi)
    assert sensitivity_n(model, x, t, noise, n=5, n_subsets=30).abs().max() < 0.9


# ---------------------------------------------------------------------------------------------
# Localisation


def test_localisation_scores_by_hand() -> None:
    maps = torch.zeros(4, 4, 4)
    maps[0, 1, 1] = 3.0  # peak inside the mask
    maps[1, 3, 3] = 3.0  # peak outside
    maps[1, 1, 1] = 1.0
    maps[2] = 1.0  # constant: pointing undefined
    maps[3, 0, 0] = 2.0
    maps[3, 1, 2] = -5.0  # negative relevance is not mass
    masks = torch.zeros(4, 1, 4, 4, dtype=torch.bool)
    masks[:, 0, 1:3, 1:3] = True  # centre 2 × 2
    pg = pointing_game(maps, masks)
    assert pg[0] == 1 and pg[1] == 0 and torch.isnan(pg[2]) and pg[3] == 0
    assert pointing_game(maps, masks, tolerance=2)[1] == 1  # (3, 3) is 1 pixel from the centre block
    mass = relevance_mass(maps, masks)
    torch.testing.assert_close(mass, torch.tensor([1.0, 0.25, 0.25, 0.0]))
    rank = relevance_rank(maps, masks)  # K = 4 most relevant pixels vs the mask
    assert rank[0] >= 0.25 and rank[1] >= 0.25 and rank[3] < 0.75
    empty = torch.zeros_like(masks)
    assert torch.isnan(pointing_game(maps, empty)).all() and torch.isnan(relevance_mass(maps, empty)).all()
    assert torch.isnan(relevance_rank(maps, empty)).all()


def test_relevance_rank_counts_the_top_mask_size_pixels() -> None:
    maps = torch.arange(16.0).view(1, 4, 4)  # pixel 15 most relevant, then 14, ...
    masks = torch.zeros(1, 4, 4, dtype=torch.bool)
    masks.view(-1)[[15, 14, 0]] = True  # K = 3: top-3 are 15, 14, 13 -> 2 of 3 inside
    assert relevance_rank(maps, masks).item() == pytest.approx(2 / 3)


def test_spurious_share_is_the_mass_on_the_patch() -> None:
    maps = torch.ones(2, 4, 4)
    maps[0, 0, 0] = 5.0
    patch = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    patch[0, 0, :2, :2] = True
    share = spurious_share(maps, patch)
    assert share[0].item() == pytest.approx(8 / 20) and torch.isnan(share[1])  # image 1 has no patch


# ---------------------------------------------------------------------------------------------
# Per-example noise


def test_example_noise_follows_the_example_not_the_batch() -> None:
    ids = torch.tensor([4, 9, 2, 7, 100])
    full = example_noise((2, 3), ids, seed=5, stream=1, sample=3)
    perm = torch.tensor([3, 0, 4])
    torch.testing.assert_close(example_noise((2, 3), ids[perm], seed=5, stream=1, sample=3), full[perm])
    for change in ({"seed": 6}, {"stream": 2}, {"sample": 4}):
        other = example_noise((2, 3), ids, **{"seed": 5, "stream": 1, "sample": 3, **change})  # type: ignore[arg-type]
        assert not torch.equal(other, full)
    big = example_noise((1000,), torch.arange(50), seed=0, stream=0, distribution="normal")
    assert abs(big.mean().item()) < 0.02 and abs(big.std().item() - 1) < 0.02
