"""Localisation against the synthetic ground truth: top-k intersection, ROC AUC against the mask,
and focus on 2 × 2 mosaics. Closed forms, and Quantus 0.6 on the same maps and masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from common.mosaics import build_mosaics, mosaics_around
from datamodules import generate_shapes
from attributions import pixel_map
from metrics.functional.localisation import focus, mask_auc, mask_topk_intersection


@pytest.fixture(scope="module")
def shapes() -> tuple[Tensor, Tensor, Tensor]:
    data = generate_shapes(24, 3, 16, 1, seed=4)
    return data.images, data.labels, data.masks[:, 0]


def _pooling_model(classes: int = 3) -> nn.Module:
    """Any size in, logits out: Quantus wants a model even when the maps are given."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, classes)).eval()


def test_a_map_equal_to_the_mask_scores_1_and_a_constant_map_chance(shapes: tuple[Tensor, Tensor, Tensor]) -> None:
    _, _, masks = shapes
    exact = masks.float()
    smallest = int(masks.flatten(1).sum(dim=1).min())
    torch.testing.assert_close(mask_topk_intersection(exact, masks, k=smallest), torch.ones(len(masks)))
    torch.testing.assert_close(mask_auc(exact, masks), torch.ones(len(masks)))
    constant = torch.full_like(exact, 0.3)
    torch.testing.assert_close(mask_auc(constant, masks), torch.full((len(masks),), 0.5))
    share = masks.flatten(1).float().mean(dim=1)  # a constant map's top k is a random pick
    torch.testing.assert_close(mask_topk_intersection(constant, masks, k=10), share)
    torch.testing.assert_close(mask_auc(-exact, masks), torch.zeros(len(masks)))  # the mask inverted
    # Partial ties at the k-th value count by their expected share.
    one = torch.tensor([[[3.0, 1.0, 1.0, 1.0]]])
    inside = torch.tensor([[[False, True, False, False]]])
    assert mask_topk_intersection(one, inside, k=2).item() == pytest.approx(0.5 * (1 / 3))


def test_undefined_scores_are_nan() -> None:
    maps = torch.rand(2, 4, 4)
    empty, full = torch.zeros(2, 4, 4, dtype=torch.bool), torch.ones(2, 4, 4, dtype=torch.bool)
    assert mask_topk_intersection(maps, empty, k=3).isnan().all()
    assert mask_auc(maps, empty).isnan().all() and mask_auc(maps, full).isnan().all()
    quadrants = torch.tensor([[True, True, False, False], [False] * 4])
    scores = focus(torch.stack([-torch.ones(4, 4), torch.ones(4, 4)]), quadrants)
    assert scores.isnan().all()  # no positive relevance; no target quadrant
    with pytest.raises(ValueError, match="k must be"):
        mask_topk_intersection(maps, full, k=17)
    with pytest.raises(ValueError, match="quadrants must be"):
        focus(maps, quadrants[:, :3])


def test_mosaics_hold_two_target_tiles_where_the_flags_say(shapes: tuple[Tensor, Tensor, Tensor]) -> None:
    images, labels, masks = shapes
    mosaics = build_mosaics(images, labels, 12, seed=1, masks=masks)
    assert mosaics.images.shape == (12, 1, 32, 32) and mosaics.quadrants.shape == (12, 4)
    tile_labels = labels[mosaics.sources]  # (M, 4)
    assert torch.equal(tile_labels == mosaics.labels[:, None], mosaics.quadrants)
    assert (mosaics.quadrants.sum(dim=1) == 2).all()
    assert all(len(set(row.tolist())) == 4 for row in mosaics.sources)  # four distinct images
    for m in range(12):
        for q, (r, c) in enumerate([(0, 0), (0, 16), (16, 0), (16, 16)]):
            torch.testing.assert_close(mosaics.images[m, :, r : r + 16, c : c + 16], images[mosaics.sources[m, q]])
            expected = masks[mosaics.sources[m, q]] & mosaics.quadrants[m, q]
            assert torch.equal(mosaics.masks[m, 0, r : r + 16, c : c + 16], expected)
    # Mosaic m depends on (seed, m) only.
    more = build_mosaics(images, labels, 20, seed=1)
    assert torch.equal(more.sources[:12], mosaics.sources)
    with pytest.raises(ValueError, match="at least 2 images"):
        build_mosaics(images[:3], torch.tensor([0, 1, 2]), 2)


def test_mosaics_around_each_image_and_at_half_size(shapes: tuple[Tensor, Tensor, Tensor]) -> None:
    images, labels, masks = shapes
    ids = torch.arange(50, 50 + len(labels))
    around = mosaics_around(images, labels, seed=1, ids=ids, masks=masks, half_size=True)
    assert around.images.shape == images.shape and around.defined is not None and around.defined.all()
    assert torch.equal(around.labels, labels)
    assert ((around.sources == torch.arange(len(labels))[:, None]) & around.quadrants).sum(dim=1).eq(1).all()  # i is a target tile
    assert torch.equal(labels[around.sources] == labels[:, None], around.quadrants)
    pooled = torch.nn.functional.avg_pool2d(images[around.sources[0, 3]], 2)
    torch.testing.assert_close(around.images[0, :, 8:, 8:], pooled)  # quadrant 3, bottom-right
    # Half-size mosaics keep focus's closed form: relevance on the target objects only scores 1.
    torch.testing.assert_close(focus(around.masks[:, 0].float(), around.quadrants), torch.ones(len(labels)))
    # An image without a partner of its class gets a placeholder marked undefined.
    lonely = mosaics_around(images[:4], torch.tensor([0, 1, 1, 2]))
    assert lonely.defined.tolist() == [False, True, True, False]


def test_focus_closed_forms_on_mosaics(shapes: tuple[Tensor, Tensor, Tensor]) -> None:
    images, labels, masks = shapes
    mosaics = build_mosaics(images, labels, 8, seed=2, masks=masks)
    on_objects = mosaics.masks[:, 0].float()  # relevance only on the target objects
    torch.testing.assert_close(focus(on_objects, mosaics.quadrants), torch.ones(8))
    torch.testing.assert_close(focus(torch.ones(8, 32, 32), mosaics.quadrants), torch.full((8,), 0.5))
    # Negative relevance is ignored.
    torch.testing.assert_close(focus(on_objects - 5 * (~mosaics.masks[:, 0]).float(), mosaics.quadrants), torch.ones(8))


def test_localisation_equals_quantus(shapes: tuple[Tensor, Tensor, Tensor]) -> None:
    quantus = pytest.importorskip("quantus")
    images, labels, masks = shapes
    torch.manual_seed(0)
    maps = torch.randn(len(masks), 16, 16)  # no ties: every top-k convention agrees
    options = {"abs": False, "normalise": False, "disable_warnings": True}
    x, y, model = images.numpy(), labels.numpy(), _pooling_model()
    expected = quantus.TopKIntersection(k=20, **options)(
        model, x, y, a_batch=maps[:, None].numpy(), s_batch=masks[:, None].numpy(), device="cpu"
    )
    np.testing.assert_allclose(mask_topk_intersection(maps, masks, k=20).numpy(), expected, atol=1e-6)
    tied = (maps * 2).round()  # many ties: scikit-learn's ROC counts them half, as ours
    expected = quantus.AUC(**options)(model, x, y, a_batch=tied[:, None].numpy(), s_batch=masks[:, None].numpy(), device="cpu")
    np.testing.assert_allclose(mask_auc(tied, masks).numpy(), expected, atol=1e-6)
    mosaics = build_mosaics(images, labels, 10, seed=3)
    mosaic_maps = torch.randn(10, 32, 32)
    expected = quantus.Focus(**options)(
        model, mosaics.images.numpy(), mosaics.labels.numpy(), a_batch=mosaic_maps[:, None].numpy(),
        custom_batch=mosaics.quadrants.numpy().astype(int), device="cpu",
    )
    np.testing.assert_allclose(focus(mosaic_maps, mosaics.quadrants).numpy(), expected, atol=1e-6)


def test_the_family_by_name_and_focus_on_the_batch(shapes: tuple[Tensor, Tensor, Tensor]) -> None:
    from attributions import Saliency
    from metrics import check_metric, compute_metrics, metric_spec
    from report.plan import _check_metric_names
    from tests.metric_cases import tiny_model

    images, labels, masks = shapes
    model, saliency = tiny_model(), Saliency()
    names = ["mask_topk_intersection", "mask_auc", "focus"]
    scores = compute_metrics(names, model, images, labels, saliency, masks, options={"mask_topk_intersection": {"k": 12}})
    maps = pixel_map(saliency(model, images, labels), "sum")
    torch.testing.assert_close(scores["mask_topk_intersection"], mask_topk_intersection(maps, masks, k=12))
    torch.testing.assert_close(scores["mask_auc"], mask_auc(maps, masks))
    mosaics = mosaics_around(images, labels, half_size=True)
    expected = focus(pixel_map(saliency(model, mosaics.images, labels), "sum"), mosaics.quadrants)
    torch.testing.assert_close(scores["focus"], expected)
    assert metric_spec("mask_auc").requires == ("masks",) and metric_spec("focus").requires == ()
    assert _check_metric_names(names) == names
    with pytest.raises(ValueError, match="masks must be given"):
        compute_metrics(["mask_auc"], model, images, labels, saliency)
    with pytest.raises(ValueError, match="k must be an integer"):
        check_metric("mask_topk_intersection", k=0)
    with pytest.raises(ValueError, match="half_size=False needs a model"):
        compute_metrics(["focus"], model, images, labels, saliency, options={"focus": {"half_size": False}})
