"""Sampled metrics stacked into passes of M images score exactly as one call per sample does."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from attributions import AttributionMethod, GradCAM, IntegratedGradients, Saliency, SmoothGrad
from metrics import compute_metric
from metrics.functional import (
    avg_sensitivity,
    deletion_auc,
    explanation_robustness,
    infidelity,
    insertion_auc,
    local_lipschitz,
    max_sensitivity,
    pass_budget,
    sensitivity_n,
)
from metrics.functional.stacking import default_pass_images, stacked_passes
from tests.metric_cases import shapes_batch, tiny_model

B = 6
#: M = B is the unstacked evaluation; 4 < B splits a sample's batch; 7 and 13 do not divide the
#: rows; 5 · B stacks five samples; 10 000 puts everything in one pass
BUDGETS = (4, 7, 13, 5 * B, 10_000)


def _metrics(method: AttributionMethod) -> dict[str, Callable[..., Tensor]]:
    """Every stacked metric, on (model, x, target, attribution, budget); no Φ(x) given to the
    attribution metrics, so that Φ(x) is computed in stacked calls too."""
    return {
        "max_sensitivity": lambda m, x, t, a, k: max_sensitivity(m, x, t, method, n_samples=5, pass_budget=k),
        "avg_sensitivity_abs": lambda m, x, t, a, k: avg_sensitivity(
            m, x, t, method, n_samples=5, relative=False, radius=0.2, pass_budget=k
        ),
        "local_lipschitz": lambda m, x, t, a, k: local_lipschitz(m, x, t, method, n_samples=5, pass_budget=k),
        "infidelity": lambda m, x, t, a, k: infidelity(m, x, t, method, n_samples=5, pass_budget=k),
        "deletion_auc": lambda m, x, t, a, k: deletion_auc(m, x, t, a, steps=5, pass_budget=k),
        "insertion_auc": lambda m, x, t, a, k: insertion_auc(m, x, t, a, steps=5, pass_budget=k),
        "sensitivity_n": lambda m, x, t, a, k: sensitivity_n(m, x, t, a, n_subsets=5, pass_budget=k),
        "cosine@noise": lambda m, x, t, a, k: explanation_robustness(
            m, x, t, method, "noise", ("cosine", "spearman"), pass_budget=k
        )["spearman"],
    }


class OneAtATime(nn.Module):
    """The wrapped model applied to each example alone: its output bits cannot depend on the
    batch size (the CPU's convolution and matrix kernels choose their blocking by batch size)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.inner(row.unsqueeze(0)) for row in x])


def _inputs(model: nn.Module | None = None) -> tuple[nn.Module, Tensor, Tensor, Tensor]:
    model, data = model or tiny_model(), shapes_batch(B)
    return model, data.images, data.labels, Saliency()(model, data.images, data.labels)


@pytest.mark.parametrize("name", list(_metrics(Saliency())))
def test_stacked_and_unstacked_scores_are_identical(name: str) -> None:
    """Bitwise, with a model whose per-example arithmetic is batch-independent: stacking adds no
    arithmetic of its own (the same images, noise keys, targets and reductions)."""
    model, x, target, attribution = _inputs(OneAtATime(tiny_model()))
    compute = _metrics(Saliency())[name]
    unstacked = compute(model, x, target, attribution, B)
    assert torch.isfinite(unstacked).all()
    for budget in BUDGETS:
        torch.testing.assert_close(compute(model, x, target, attribution, budget), unstacked, rtol=0, atol=0, msg=f"M={budget}")


@pytest.mark.parametrize("name", list(_metrics(Saliency())))
def test_stacked_scores_agree_to_rounding_on_batched_kernels(name: str) -> None:
    """On the plain model the kernels move a logit by about one ulp with the batch size; metrics
    that difference nearly equal logits (infidelity: values ~1e-6 here; Sensitivity-n) show it
    most, relative 1e-5 at worst."""
    model, x, target, attribution = _inputs()
    compute = _metrics(Saliency())[name]
    unstacked = compute(model, x, target, attribution, B)
    rtol, atol = (1e-4, 0.0) if name == "infidelity" else (1e-6, 1e-5)
    for budget in BUDGETS:
        torch.testing.assert_close(compute(model, x, target, attribution, budget), unstacked, rtol=rtol, atol=atol, msg=f"M={budget}")


class _BatchSizes(Saliency):
    """Saliency that records the batch size of every call."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def attribute(self, model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
        self.sizes.append(inputs.shape[0])
        return super().attribute(model, inputs, target)


@pytest.mark.parametrize("budget", [4, 7, 13, 10_000])
def test_passes_hold_at_most_the_budget_and_cover_every_row_once(budget: int) -> None:
    model, x, target, attribution = _inputs()
    method = _BatchSizes()
    max_sensitivity(model, x, target, method, n_samples=5, attribution=attribution, pass_budget=budget)
    rows = 5 * B
    assert sum(method.sizes) == rows
    assert len(method.sizes) == -(-rows // budget)  # ⌈n·B / M⌉ calls
    assert max(method.sizes) <= budget
    layout = [(block.sample, block.examples.start, block.examples.stop) for p in stacked_passes(5, B, budget) for block in p]
    covered = [(j, i) for j, start, stop in layout for i in range(start, stop)]
    assert covered == [(j, i) for j in range(5) for i in range(B)]  # sample-major, each row once


def test_the_context_budget_applies_and_the_keyword_overrides_it() -> None:
    model, x, target, attribution = _inputs()
    method = _BatchSizes()
    with pass_budget(images=B):
        max_sensitivity(model, x, target, method, n_samples=5, attribution=attribution)
        assert method.sizes == [B] * 5
        method.sizes.clear()
        max_sensitivity(model, x, target, method, n_samples=5, attribution=attribution, pass_budget=3 * B)
        assert method.sizes == [3 * B, 2 * B]
    method.sizes.clear()
    max_sensitivity(model, x, target, method, n_samples=5, attribution=attribution)
    assert method.sizes == [5 * B]  # the CPU default for 1×16×16 images: 256 images per pass
    assert default_pass_images((1, 16, 16), B) == 256
    assert default_pass_images((1, 16, 16), 2000) == 2000  # never below the batch
    assert default_pass_images((3, 32, 32), 8, "cuda") == 682


def test_the_registry_follows_the_context_budget() -> None:
    model, x, target, _ = _inputs(OneAtATime(tiny_model()))
    method = _BatchSizes()
    with pass_budget(images=B):
        unstacked = compute_metric("infidelity", model, x, target, Saliency(), n_samples=6)
        compute_metric("max_sensitivity", model, x, target, method, n_samples=3)
    assert method.sizes == [B] * 4  # Φ(x), then one call per sample
    torch.testing.assert_close(compute_metric("infidelity", model, x, target, Saliency(), n_samples=6), unstacked, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("method", "one_at_a_time", "rtol"),
    [
        (SmoothGrad(n_samples=3, seed=1), True, 0.0),  # noise keyed by each image's pixels
        # IG sums its path gradients in groups of internal_batch_size // rows steps: the grouping
        # of that float32 sum changes with the batch size, by rounding only
        (IntegratedGradients(steps=4, internal_batch_size=8), True, 1e-5),
        # Grad-CAM hooks a layer called once per forward: the plain model, its kernels' rounding
        (GradCAM(), False, 1e-4),
    ],
    ids=["smoothgrad_seeded", "integrated_gradients", "gradcam"],
)
def test_batch_sensitive_methods_give_the_same_scores_stacked(
    method: AttributionMethod, one_at_a_time: bool, rtol: float
) -> None:
    """Methods called on the stacked batch still explain each example alone, for the class each
    example is predicted as when no target is given."""
    model, x, _, _ = _inputs(OneAtATime(tiny_model()) if one_at_a_time else tiny_model())
    unstacked = max_sensitivity(model, x, None, method, n_samples=4, pass_budget=B)
    for budget in (5, 4 * B):
        stacked = max_sensitivity(model, x, None, method, n_samples=4, pass_budget=budget)
        torch.testing.assert_close(stacked, unstacked, rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "64"])
def test_bad_budgets_are_refused_with_the_field_named(bad: object) -> None:
    model, x, target, attribution = _inputs()
    with pytest.raises(ValueError, match=r"pass_budget must be an integer >= 1"):
        infidelity(model, x, target, Saliency(), n_samples=2, attribution=attribution, pass_budget=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"images must be an integer >= 1"):
        with pass_budget(images=bad):  # type: ignore[arg-type]
            pytest.fail("the block must not run")
