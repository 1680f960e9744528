"""Complexity metrics: closed forms (one-hot, constant, uniform maps) and Quantus 0.6 on the same maps."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import Tensor

from metrics.functional.complexity import complexity, effective_complexity, sparseness


def one_hot_maps(b: int = 3, channels: int = 2, size: int = 5) -> Tensor:
    maps = torch.zeros(b, channels, size, size)
    for i in range(b):
        maps[i, i % channels, i, (2 * i) % size] = -(i + 1.5)  # the sign and channel do not matter
    return maps


def test_sparseness_of_one_hot_is_maximal_and_of_constant_zero() -> None:
    d = 25
    assert torch.allclose(sparseness(one_hot_maps()), torch.full((3,), (d - 1) / d, dtype=torch.float64))
    constant = torch.full((2, 1, 5, 5), 0.7)
    assert torch.allclose(sparseness(constant), torch.zeros(2, dtype=torch.float64), atol=1e-12)
    assert sparseness(torch.zeros(1, 1, 5, 5)).item() == 0.0
    random = torch.rand(64, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    scores = sparseness(random)
    assert ((scores > 0) & (scores < (d - 1) / d)).all()


def test_sparseness_grows_as_mass_concentrates() -> None:
    base = torch.ones(1, 1, 4, 4)
    peaked = base.clone()
    peaked[0, 0, 0, 0] = 10.0
    assert sparseness(peaked) > sparseness(base)
    assert torch.allclose(sparseness(3.0 * peaked), sparseness(peaked))  # scale-free


def test_entropy_of_uniform_map_is_log_d_and_of_one_hot_zero() -> None:
    uniform = torch.full((2, 3, 4, 6), -0.2)  # channels summed in absolute value: still uniform per pixel
    assert torch.allclose(complexity(uniform), torch.full((2,), math.log(24), dtype=torch.float64))
    assert torch.allclose(complexity(one_hot_maps()), torch.zeros(3, dtype=torch.float64))
    assert complexity(torch.zeros(1, 1, 3, 3)).item() == 0.0
    half = torch.zeros(1, 1, 2, 4)
    half[..., 0, :] = 1.0  # four equal pixels of eight
    assert complexity(half).item() == pytest.approx(math.log(4))


def test_effective_complexity_counts_relative_to_the_example_maximum() -> None:
    maps = torch.tensor([[[[1.0, 0.5, 1e-7, 0.0]]], [[[100.0, 50.0, 1e-5, 0.0]]]])
    assert effective_complexity(maps, eps=1e-5).tolist() == [2.0, 2.0]  # the same shape, any scale
    assert effective_complexity(maps, eps=0.0).tolist() == [3.0, 3.0]
    assert effective_complexity(torch.zeros(1, 1, 2, 2)).item() == 0.0
    with pytest.raises(ValueError, match="eps"):
        effective_complexity(maps, eps=1.5)


def quantus_scores(name: str, maps: Tensor, **options: object) -> np.ndarray:
    quantus = pytest.importorskip("quantus")
    from tests.tiny import tiny_cnn

    b, _, h, w = maps.shape
    model = tiny_cnn(size=h).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = getattr(quantus, name)(disable_warnings=True, **options)
        scores = metric(
            model=model, x_batch=np.zeros((b, 1, h, w), np.float32), y_batch=np.zeros(b, np.int64),
            a_batch=maps.numpy().copy(), channel_first=True, device="cpu",
        )
    return np.asarray(scores, dtype=np.float64)


def random_maps() -> Tensor:
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(6, 1, 8, 8, generator=g) ** 4  # skewed, so the scores spread
    maps[1, :, :4] = 0.0  # exact zeros: Quantus's 1e-7 offset moves the Gini
    maps[2] = 0.0
    maps[2, 0, 3, 3] = 2.0  # one-hot
    return maps


def test_sparseness_and_complexity_equal_quantus() -> None:
    maps = random_maps()
    # Quantus adds 1e-7 to every value before the Gini (documented): the same formula on the
    # offset maps agrees to float32 rounding, and the offset moves a score by at most 1e-7·d/Σr.
    q = quantus_scores("Sparseness", maps, normalise=False)
    assert np.allclose(sparseness(maps + 1e-7).numpy(), q, atol=1e-6, rtol=0)
    bound = 1e-7 * 64 / maps.flatten(1).sum(dim=1).double()
    assert (torch.from_numpy(q) - sparseness(maps)).abs().le(bound + 1e-6).all()
    q = quantus_scores("Complexity", maps, normalise=False)
    assert np.allclose(complexity(maps).numpy(), q, atol=1e-5, rtol=0)


def test_effective_complexity_equals_quantus_on_per_example_normalised_maps() -> None:
    """Quantus divides by the batch's largest |Φ|; given maps already divided by their own
    maximum (and normalise=False) it counts what this function counts."""
    maps = random_maps()
    maps[3] *= 1e-3  # with the batch maximum this example would lose most of its pixels
    own_max = maps.flatten(1).abs().max(dim=1).values.view(-1, 1, 1, 1)
    for eps in (1e-5, 0.05):
        q = quantus_scores("EffectiveComplexity", maps / own_max, normalise=False, eps=eps)
        assert effective_complexity(maps, eps=eps).numpy().tolist() == q.tolist()
    q_batch = quantus_scores("EffectiveComplexity", maps, normalise=True, eps=0.05)
    assert q_batch[3] < effective_complexity(maps[3:4], eps=0.05).item()  # the documented difference


# ---------------------------------------------------------------------------------------------
# By name


def test_complexity_metrics_by_name_equal_the_functions_and_check_their_options() -> None:
    from attributions import Saliency
    from metrics import build_metric, compute_metrics, metric_spec
    from report.plan import _check_metric_names
    from tests.tiny import shapes_batch, tiny_cnn

    model = tiny_cnn(size=8).eval()
    x, y = shapes_batch(5, size=8)
    phi = Saliency()(model, x, y)
    names = ["sparseness", "complexity", "effective_complexity"]
    scores = compute_metrics(names, model, x, y, Saliency(), options={"effective_complexity": {"threshold": 0.1}})
    assert torch.equal(scores["sparseness"], sparseness(phi).float())
    assert torch.equal(scores["complexity"], complexity(phi).float())
    assert torch.equal(scores["effective_complexity"], effective_complexity(phi, eps=0.1).float())
    assert _check_metric_names(names) == names  # the report accepts them
    assert [metric_spec(n).higher_is_better for n in names] == [True, False, False]
    with pytest.raises(ValueError, match="threshold"):
        build_metric("effective_complexity", threshold=1.0)
