"""Saliency-guided training: which features are masked, with what, and side effects."""

from __future__ import annotations

import pytest
import torch

from losses import SaliencyGuidedTraining
from losses.saliency_guided import lowest_saliency_mask, replacement_values, saliency_map
from tests.tiny import shapes_batch, tiny_cnn


def test_masks_exactly_the_lowest_saliency_fraction() -> None:
    """Against a direct per-image sort: the masked set is the k·n features of smallest |g|."""
    generator = torch.Generator().manual_seed(0)
    saliency = torch.randn(4, 1, 6, 6, generator=generator)  # distinct values: no ties
    mask = lowest_saliency_mask(saliency, 0.25, "abs", "pixel")
    assert mask.shape == saliency.shape and mask.dtype == torch.bool
    for i in range(4):
        order = saliency[i].abs().flatten().argsort()
        expected = torch.zeros(36, dtype=torch.bool)
        expected[order[:9]] = True
        assert torch.equal(mask[i].flatten(), expected)


def test_signed_ranking_masks_the_most_negative_features() -> None:
    saliency = torch.tensor([-5.0, -0.1, 0.0, 0.2, 3.0, -2.0]).view(1, 1, 2, 3)
    signed = lowest_saliency_mask(saliency, 0.5, "signed", "pixel").flatten()
    magnitude = lowest_saliency_mask(saliency, 0.5, "abs", "pixel").flatten()
    assert signed.tolist() == [True, True, False, False, False, True]
    assert magnitude.tolist() == [False, True, True, True, False, False]


def test_colour_pixels_are_masked_in_every_channel_by_channel_summed_saliency() -> None:
    generator = torch.Generator().manual_seed(1)
    saliency = torch.randn(2, 3, 4, 4, generator=generator)
    mask = lowest_saliency_mask(saliency, 0.5, "abs", "pixel")
    assert torch.equal(mask[:, 0], mask[:, 1]) and torch.equal(mask[:, 0], mask[:, 2])
    assert int(mask[:, 0].sum()) == 2 * 8  # half of the 16 pixels of each image, in all channels
    score = saliency.abs().sum(1).flatten(1)  # (B, 16)
    for i in range(2):
        assert torch.equal(mask[i, 0].flatten(), score[i] <= score[i].sort().values[7])


def test_value_unit_ranks_channel_values_one_by_one() -> None:
    generator = torch.Generator().manual_seed(2)
    saliency = torch.randn(2, 3, 4, 4, generator=generator)
    mask = lowest_saliency_mask(saliency, 0.25, "abs", "value")
    assert int(mask[0].sum()) == 12 and int(mask[1].sum()) == 12  # 25 % of 48 values
    threshold = saliency.abs().flatten(1).sort(1).values[:, 11:12]  # (B, 1)
    assert torch.equal(mask.flatten(1), saliency.abs().flatten(1) <= threshold)


@pytest.mark.parametrize("replacement", ["uniform", "constant", "mean"])
def test_masked_input_replaces_exactly_k_features_with_in_range_values(replacement: str) -> None:
    model = tiny_cnn(num_classes=3, channels=3)
    x, y = shapes_batch(8, channels=3)
    x = 0.2 + 0.5 * x  # each image's range lies inside (0, 1), so "inside the range" is a real check
    objective = SaliencyGuidedTraining(mask_fraction=0.3, replacement=replacement, replacement_value=0.45)
    torch.manual_seed(0)
    x_masked = objective.masked_input(model, x, y)
    changed = (x_masked != x).flatten(1)  # (B, C·H·W)
    expected = lowest_saliency_mask(saliency_map(model, x, y), 0.3, "abs", "pixel").flatten(1)
    count = round(0.3 * 16 * 16)
    assert int(expected.sum(1).unique()) == 3 * count  # whole pixels: three values each
    assert not (changed & ~expected).any(), "a feature outside the mask was changed"
    low = x.flatten(1).amin(1, keepdim=True)
    high = x.flatten(1).amax(1, keepdim=True)
    assert ((x_masked.flatten(1) >= low) & (x_masked.flatten(1) <= high)).all()
    if replacement == "uniform":
        assert changed.sum() > 0.99 * expected.sum()  # continuous draws hit the old value with probability 0


def test_replacement_values_are_drawn_from_each_images_own_range() -> None:
    x = torch.stack([torch.full((1, 4, 4), 0.1), torch.full((1, 4, 4), 0.9)])
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 0.3, 0.7
    torch.manual_seed(0)
    fill = replacement_values(x, "uniform", 0.0)
    assert fill[0].min() >= 0.1 and fill[0].max() <= 0.3
    assert fill[1].min() >= 0.7 and fill[1].max() <= 0.9


def test_saliency_pass_leaves_weights_grad_mode_and_input_alone() -> None:
    model = tiny_cnn().train()
    x, y = shapes_batch(4)
    saliency = SaliencyGuidedTraining().masked_input(model, x, y)
    assert saliency.shape == x.shape and not saliency.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert model.training and not x.requires_grad


def test_loss_is_ce_plus_lambda_kl_and_returns_clean_logits() -> None:
    model = tiny_cnn()
    x, y = shapes_batch(8)
    out = SaliencyGuidedTraining(kl_weight=2.0)(model, x, y)
    torch.testing.assert_close(out.loss.detach(), out.logs["ce"] + 2.0 * out.logs["kl"])
    assert out.logs["kl"] >= 0
    torch.testing.assert_close(out.logits.detach(), model(x).detach())
