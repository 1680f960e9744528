"""Sanity check by cascading randomisation on a trained network (Adebayo et al., NeurIPS 2018)."""

from __future__ import annotations

import sys

import pytest
import torch

from attributions import EdgeDetector, Saliency
from callbacks import SanityCheck
from metrics import check_metric, compute_metric
from metrics.functional import cascading_randomisation, hog_similarity, parameter_layers
from metrics.functional.similarity import hog_cell_size
from tests.trained_model import TrainedShapes


def test_layers_are_listed_in_forward_order(trained_shapes: TrainedShapes) -> None:
    layers = parameter_layers(trained_shapes.model, trained_shapes.x)
    assert layers == [
        "net.features.0", "net.features.2", "net.features.5", "net.features.7",
        "net.classifier.1", "net.classifier.3",
    ]


def test_gradient_loses_similarity_and_the_edge_detector_does_not(trained_shapes: TrainedShapes) -> None:
    model, x = trained_shapes.model, trained_shapes.x[:32]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()

    gradient = cascading_randomisation(model, x, trained_shapes.y[:32], Saliency())
    assert gradient.layers[0] == "net.classifier.3" and gradient.layers[-1] == "net.features.0"  # top first
    rho, structural = gradient.spearman.nanmean(0), gradient.ssim.nanmean(0)  # (L,)
    assert rho[-1] < 0.3 and rho[-1] < rho[0] - 0.2, rho  # falls as more layers are randomised
    assert structural[-1] < structural[0], structural

    edges = cascading_randomisation(model, x, trained_shapes.y[:32], EdgeDetector())
    torch.testing.assert_close(edges.spearman, torch.ones_like(edges.spearman))
    torch.testing.assert_close(edges.ssim, torch.ones_like(edges.ssim))

    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # the copy was randomised
    assert torch.equal(torch.get_rng_state(), rng)


def test_randomisation_through_the_registry_is_per_layer(trained_shapes: TrainedShapes) -> None:
    model, x, y = trained_shapes.model, trained_shapes.x[:8], trained_shapes.y[:8]
    rho = compute_metric("randomisation", model, x, y, Saliency())
    ssim = compute_metric("randomisation", model, x, y, Saliency(), similarity="ssim")
    direct = cascading_randomisation(model, x, y, Saliency())
    torch.testing.assert_close(rho, direct.spearman)
    torch.testing.assert_close(ssim, direct.ssim)
    assert rho.shape == (8, 6)


def test_hog_similarity_matches_scikit_image_and_ranks_structure() -> None:
    feature = pytest.importorskip("skimage.feature")
    scipy_stats = pytest.importorskip("scipy.stats")
    torch.manual_seed(0)
    a = torch.rand(3, 28, 28)
    noisy = a + 0.05 * torch.rand(3, 28, 28)
    assert hog_cell_size(28, 28) == 4 and hog_cell_size(299, 299) == 16 and hog_cell_size(8, 8) == 2
    # Reference: Adebayo et al.'s recipe by hand on [0, 1]-normalised maps.
    for i in range(3):
        unit = [(m - m.min()) / (m.max() - m.min()) for m in (a[i].double(), noisy[i].double())]
        features = [feature.hog(m.numpy(), orientations=9, pixels_per_cell=(4, 4), cells_per_block=(3, 3)) for m in unit]
        expected = scipy_stats.spearmanr(*features)[0]
        assert hog_similarity(a[i : i + 1], noisy[i : i + 1]).item() == pytest.approx(expected, abs=1e-5)
    torch.testing.assert_close(hog_similarity(a, 3 * a + 1), torch.ones(3))  # rescaling is normalised away
    assert (hog_similarity(a, a.transpose(1, 2)) < hog_similarity(a, noisy)).all()


def test_hog_in_the_randomisation_check(trained_shapes: TrainedShapes) -> None:
    pytest.importorskip("skimage.feature")
    model, x, y = trained_shapes.model, trained_shapes.x[:8], trained_shapes.y[:8]
    edges = cascading_randomisation(model, x, y, EdgeDetector(), hog=True)
    assert edges.hog is not None
    torch.testing.assert_close(edges.hog, torch.ones_like(edges.hog))
    gradient = compute_metric("randomisation", model, x, y, Saliency(), similarity="hog")  # (B, L)
    assert gradient.shape == edges.hog.shape and gradient[:, -1].mean() < 0.9
    assert cascading_randomisation(model, x, y, Saliency()).hog is None  # only on request


def test_hog_without_scikit_image_names_the_dependency(monkeypatch: pytest.MonkeyPatch, trained_shapes: TrainedShapes) -> None:
    monkeypatch.setitem(sys.modules, "skimage.feature", None)  # as if scikit-image were not installed
    with pytest.raises(ValueError, match="needs scikit-image"):
        check_metric("randomisation", similarity="hog")
    with pytest.raises(ValueError, match="needs scikit-image"):
        SanityCheck(similarities=["spearman", "hog"])
    assert check_metric("randomisation", similarity="ssim")["similarity"] == "ssim"
