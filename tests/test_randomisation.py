"""Sanity check by cascading randomisation on a trained network (Adebayo et al., NeurIPS 2018)."""

from __future__ import annotations

import torch

from attributions import EdgeDetector, Saliency
from metrics import compute_metric
from metrics.functional import cascading_randomisation, parameter_layers
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
