"""Backbones: shapes, normalisation inside the model, softplus swap, name validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attributions import count_relus, softplus_relus
from lightning_modules import build_backbone, build_model


@pytest.mark.parametrize(
    "name, shape, kwargs",
    [
        ("small_cnn", (1, 28, 28), {"width": 4, "hidden": 8}),
        ("small_cnn", (3, 32, 32), {"width": 4, "hidden": 8, "batch_norm": True}),
        ("preact_resnet18", (3, 32, 32), {"width": 4}),
        ("torchvision/resnet18", (1, 28, 28), {}),
    ],
)
def test_backbones_give_one_logit_per_class(name: str, shape: tuple[int, int, int], kwargs: dict) -> None:
    net = build_backbone(name, 7, shape, **kwargs)
    assert net(torch.rand(2, *shape)).shape == (2, 7)


def test_normalisation_is_the_first_layer() -> None:
    model = build_model("small_cnn", 3, (3, 16, 16), (0.1, 0.2, 0.3), (0.5, 0.25, 0.2), backbone_kwargs={"width": 4})
    x = torch.rand(4, 3, 16, 16)
    mean = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.5, 0.25, 0.2]).view(1, 3, 1, 1)
    torch.testing.assert_close(model(x), model.net((x - mean) / std))
    assert list(model.state_dict())[:2] == ["normalize.mean", "normalize.std"]


def test_softplus_activation_replaces_every_relu() -> None:
    relu_net = build_backbone("preact_resnet18", 3, (3, 32, 32), width=4)
    soft_net = build_backbone("preact_resnet18", 3, (3, 32, 32), activation="softplus", softplus_beta=5.0, width=4)
    assert count_relus(relu_net) > 0 and count_relus(soft_net) == 0
    assert all(m.beta == 5.0 for m in soft_net.modules() if isinstance(m, nn.Softplus))


def test_softplus_context_swaps_and_restores() -> None:
    net = build_backbone("small_cnn", 3, (1, 16, 16), width=4, hidden=8)
    x = torch.rand(2, 1, 16, 16)
    before, n_relus = net(x), count_relus(net)
    with softplus_relus(net, beta=1e4):
        assert count_relus(net) == 0
        torch.testing.assert_close(net(x), before, atol=1e-3, rtol=1e-3)  # β → ∞ is ReLU
    assert count_relus(net) == n_relus
    torch.testing.assert_close(net(x), before)


@pytest.mark.parametrize("name", ["resnet", "torchvision/not_a_model"])
def test_unknown_backbone_names_the_allowed_values(name: str) -> None:
    with pytest.raises(ValueError, match="small_cnn|list_models"):
        build_backbone(name, 3, (1, 28, 28))
