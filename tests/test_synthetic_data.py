"""Synthetic shapes: determinism, masks that cover the object, the spurious patch's rates."""

from __future__ import annotations

import pytest
import torch

from datamodules import SyntheticShapes, generate_shapes


def test_same_seed_same_data_and_another_seed_other_data() -> None:
    a = generate_shapes(64, 5, 28, 1, seed=3)
    b = generate_shapes(64, 5, 28, 1, seed=3)
    c = generate_shapes(64, 5, 28, 1, seed=4)
    for field in ("images", "labels", "masks", "spurious_masks"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert not torch.equal(a.images, c.images)


def test_images_are_in_the_unit_box_with_balanced_labels() -> None:
    data = generate_shapes(300, 6, 32, 3, seed=0)
    assert data.images.shape == (300, 3, 32, 32) and data.images.dtype == torch.float32
    assert data.images.min() >= 0.0 and data.images.max() <= 1.0
    assert torch.bincount(data.labels, minlength=6).tolist() == [50] * 6


@pytest.mark.parametrize("channels", [1, 3])
def test_mask_covers_exactly_the_object(channels: int) -> None:
    # Without pixel noise, object and background differ by a contrast of at least 0.5 in every
    # channel and the background grating varies by at most ±0.12: every masked pixel is closer
    # to the object's mean colour than to the background's, and every unmasked pixel the other
    # way round. A mask that missed part of the shape or spilled onto the background fails.
    data = generate_shapes(64, 10, 28, channels, seed=1, noise=0.0)
    for image, mask in zip(data.images, data.masks):
        inside, outside = image[:, mask[0]], image[:, ~mask[0]]  # (C, n_in), (C, n_out)
        assert inside.shape[1] >= 10
        mu_in, mu_out = inside.mean(1, keepdim=True), outside.mean(1, keepdim=True)
        d_in = (image - mu_in[..., None]).abs().sum(0)  # (H, W)
        d_out = (image - mu_out[..., None]).abs().sum(0)
        assert torch.equal(d_in < d_out, mask[0])


def test_spurious_patch_rate_matches_the_option_in_train_and_is_uninformative_in_test() -> None:
    rate, n, k = 0.7, 4000, 4
    train = generate_shapes(n, k, 28, 1, seed=0, spurious_rate=rate, spurious_class=2)
    has_patch = train.spurious_masks.flatten(1).any(1)
    on_class = has_patch[train.labels == 2].float().mean().item()
    assert abs(on_class - rate) < 3 * (rate * (1 - rate) / (n / k)) ** 0.5
    assert not has_patch[train.labels != 2].any()
    test = generate_shapes(n, k, 28, 1, seed=1, spurious_rate=rate, spurious_class=2, spurious_informative=False)
    test_patch = test.spurious_masks.flatten(1).any(1)
    expected = rate / k
    for c in range(k):
        share = test_patch[test.labels == c].float().mean().item()
        assert abs(share - expected) < 4 * (expected * (1 - expected) / (n / k)) ** 0.5
    # The patch's pixels are not part of the object's mask.
    assert not (train.masks & train.spurious_masks).any()


def test_dataloaders_give_the_same_data_with_and_without_workers() -> None:
    def batches(workers: int) -> list[torch.Tensor]:
        dm = SyntheticShapes(num_classes=3, train_size=40, val_size=40, test_size=8, eval_batch_size=16, num_workers=workers)
        dm.setup("fit")
        return [x for x, _ in dm.val_dataloader()]

    for a, b in zip(batches(0), batches(2)):
        assert torch.equal(a, b)


def test_probe_batch_is_seeded_and_carries_masks() -> None:
    dm = SyntheticShapes(num_classes=3, train_size=20, val_size=50, test_size=10, spurious_rate=0.5)
    first, again, other = dm.probe_batch(8, seed=1), dm.probe_batch(8, seed=1), dm.probe_batch(8, seed=2)
    assert torch.equal(first.indices, again.indices) and not torch.equal(first.indices, other.indices)
    dataset = dm.split_dataset("val")
    for i, index in enumerate(first.indices.tolist()):
        x, y = dataset[index]
        assert torch.equal(first.x[i], x) and first.y[i] == y
    assert first.mask is not None and first.mask.shape == (8, 1, 28, 28)
    assert first.spurious_mask is not None
    with pytest.raises(ValueError, match="probe size must be in \\[1, 50\\]"):
        dm.probe_batch(51)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"channels": 2}, "channels"),
        ({"num_classes": 11}, "num_classes"),
        ({"image_size": 8}, "image_size"),
        ({"spurious_rate": 1.5}, "spurious_rate"),
        ({"train_size": 0}, "train_size"),
        ({"spurious_class": 12}, "spurious_class"),
    ],
)
def test_bad_dataset_options_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must"):
        SyntheticShapes(**kwargs)
