"""Concept relevance propagation: channel-conditional LRP heatmaps that add up, over all the
layer's channels, to zennit's own plain LRP heatmap with the same composite (conservation)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from zennit.attribution import Gradient

from concepts import CRP_COMPOSITES, ConceptRelevance, build_composite
from tests.tiny import shapes_batch, tiny_cnn

LAYER = "net.features.8"


@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_alpha2_beta1"])
def test_channel_heatmaps_over_all_channels_sum_to_the_plain_lrp_heatmap(composite: str) -> None:
    model = tiny_cnn(num_classes=3, size=16, seed=1).eval()
    x, _ = shapes_batch(4, num_classes=3, size=16, seed=2)
    target = torch.tensor([0, 1, 2, 1])
    crp = ConceptRelevance(LAYER, composite)
    k = crp.channel_count(model, x[:1])
    heatmaps = crp.conditional_heatmaps(model, x, target, torch.arange(k).repeat(len(x), 1))  # (B, K, C, H, W)

    # zennit's own attributor, same rules, relevance started at f_t(x) on the target class
    with torch.no_grad():
        logits = model(x)
    start = torch.zeros_like(logits)
    start[torch.arange(4), target] = logits[torch.arange(4), target]
    with Gradient(model, build_composite(composite, model)) as attributor:
        _, plain = attributor(x, start)
    assert torch.allclose(heatmaps.sum(dim=1), plain, atol=1e-6 * plain.abs().max().item() + 1e-9)
    # each map is conditioned: none of the channels alone carries the whole heatmap
    assert all(not torch.allclose(heatmaps[:, c], plain) for c in range(k))


def test_top_channels_are_the_most_relevant_and_the_model_is_left_as_found() -> None:
    model = tiny_cnn(num_classes=3, size=16, seed=1)
    model.train()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    x, _ = shapes_batch(3, num_classes=3, size=16, seed=3)
    x_before = x.clone()
    crp = ConceptRelevance(LAYER)
    result = crp(model, x, torch.tensor([2, 0, 1]), top=3)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())
    assert torch.equal(x, x_before) and not x.requires_grad
    full = crp.channel_relevance(model, x, torch.tensor([2, 0, 1]))  # (B, K)
    assert torch.equal(result.relevance, full.sort(dim=1, descending=True).values[:, :3])
    assert torch.allclose(result.total, full.sum(dim=1))
    assert result.heatmaps.shape == (3, 3, 1, 16, 16)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"layer": ""}, "layer"), ({"layer": LAYER, "composite": "epsilon_gamma_box"}, "composite")],
)
def test_bad_options_name_the_field(kwargs, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must"):
        ConceptRelevance(**kwargs)
    assert "epsilon_plus_flat" in CRP_COMPOSITES


@pytest.mark.parametrize(("backbone", "shape"), [("small_cnn", (1, 28, 28)), ("preact_resnet18", (3, 32, 32))])
def test_unconditioned_crp_is_the_report_lrp_map(backbone: str, shape: tuple[int, int, int]) -> None:
    """CRP and the `lrp` method use the same canonizers: with no channel masked, CRP's input
    relevance is the `lrp` map, also on a residual network whose BatchNorms must not be merged."""
    from attributions import build_attribution, default_gradcam_layer
    from lightning_modules.robust_classifier import build_model

    torch.manual_seed(0)
    model = build_model(backbone, 4, shape, [0.5] * shape[0], [0.25] * shape[0]).eval()
    for module in model.modules():  # BatchNorm statistics away from the identity
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    x = torch.rand(2, *shape)
    target = model(x).argmax(dim=1)
    relevance, _ = ConceptRelevance(default_gradcam_layer(model)).propagate(model, x, target, None)
    expected = build_attribution("lrp")(model, x, target)
    assert torch.allclose(relevance, expected, rtol=0.0, atol=1e-5 * float(expected.abs().max()))
