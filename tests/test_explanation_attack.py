"""Ghorbani et al.'s top-k attack on explanations, run as the authors' code runs it."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from attacks import CHEN_PROTOCOLS, TopKExplanationAttack, chen_protocol, default_topk
from attributions import AttributionMethod, Saliency, pixel_map
from common.similarity import kendall, topk_intersection
from metrics import build_metric, compute_metric, compute_metrics
from metrics.functional import explanation_robustness, perturb
from tests.trained_model import TrainedShapes

# ---------------------------------------------------------------------------------------------
# A scripted trajectory: the input moves by +α per step in every pixel, so step t sits at
# x = X0 + t·α, and the map and the label are chosen as functions of t.

X0, ALPHA = 0.1, 0.1


def step_of(x: Tensor) -> Tensor:
    """t of each example (B,), from the mean pixel."""
    return (x.flatten(1).mean(1) - X0) / ALPHA


class TableMap(AttributionMethod):
    """Φ(x) of a (B, 1, 2, 2) input: the row t of ``values`` (T + 1, 4), linearly interpolated in t.

    Every table below makes the share of the clean top-2 pixels fall strictly with t, so the
    attack's signed step raises every pixel by α: the trajectory is x_t = X0 + t·α.
    """

    def __init__(self, values: list[list[float]]) -> None:
        super().__init__()
        self.values = torch.tensor(values, dtype=torch.float32)  # (T + 1, 4)

    def attribute(self, model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
        x = self._input(inputs)
        t = step_of(x)  # (B,)
        low = t.detach().floor().clamp(0, len(self.values) - 2).long()
        frac = (t - low).unsqueeze(1)  # (B, 1), carries the gradient
        maps = self.values[low] * (1 - frac) + self.values[low + 1] * frac  # (B, 4)
        return maps.view(-1, 1, 2, 2)


class LabelAtStep(nn.Module):
    """Two logits: class 1 only near step ``flip_at`` (None: never), class 0 elsewhere."""

    def __init__(self, flip_at: int | None) -> None:
        super().__init__()
        self.flip_at = flip_at

    def forward(self, x: Tensor) -> Tensor:
        t = step_of(x)
        bump = 1 - 4 * (t - self.flip_at).abs() if self.flip_at is not None else torch.full_like(t, -1.0)
        return torch.stack([torch.zeros_like(t), bump], dim=1)


def scripted_attack(**kwargs: object) -> TopKExplanationAttack:
    return TopKExplanationAttack(eps=0.5, step_size=ALPHA, steps=4, k=2, **kwargs)  # type: ignore[arg-type]


X_START = torch.full((1, 1, 2, 2), X0)

# Top-2 overlap with the clean {p0, p1}: 1, 0.5, 0.5, 0, 0; share of {p0, p1} falls every step.
FALLING_AFTER_FLIP = [[10, 9, 5, 1], [9, 7, 7.5, 4], [8, 5, 10, 7], [7, 3, 12.5, 10], [6, 1, 15, 13]]


def test_the_attack_steps_on_after_a_label_flip_and_keeps_a_later_label_preserving_iterate() -> None:
    method, model = TableMap(FALLING_AFTER_FLIP), LabelAtStep(flip_at=2)
    result = scripted_attack().attack(model, X_START, method)
    chosen = result.selections["topk_intersection"]
    assert result.first_flip.tolist() == [2]
    assert chosen.step.tolist() == [3] and chosen.score.tolist() == [0.0]
    torch.testing.assert_close(chosen.x_adv, X_START + 3 * ALPHA)
    with torch.no_grad():
        assert model(chosen.x_adv).argmax(1).tolist() == [0]  # the label is kept

    old = scripted_attack(stop_at_label_flip=True).attack(model, X_START, method)
    assert old.selections["topk_intersection"].step.tolist() == [1]
    assert old.score.tolist() == [0.5] and old.first_flip.tolist() == [2]
    assert chosen.score < old.score  # the later iterate beats the step-1 iterate the old rule keeps


# Top-2 overlap: 1, 0, 0, 0.5, 0.5 (lowest at step 1); Kendall τ: 1, −1/3, −1/3, −2/3, −2/3
# (lowest at step 3); the share of {p0, p1} falls every step.
CRITERIA_DISAGREE = [[10, 9, 5, 1], [3, 2.5, 10, 9], [2.5, 2, 10, 9.5], [0.1, 1.0, 0.9, 20], [0.05, 0.5, 0.45, 30]]


def test_the_kept_iterate_follows_the_reported_criterion() -> None:
    method, model = TableMap(CRITERIA_DISAGREE), LabelAtStep(flip_at=None)
    result = scripted_attack(criteria=("topk_intersection", "kendall")).attack(model, X_START, method)
    top, tau = result.selections["topk_intersection"], result.selections["kendall"]
    assert top.step.tolist() == [1] and top.score.tolist() == [0.0]
    assert tau.step.tolist() == [3]
    torch.testing.assert_close(tau.score, torch.tensor([-2 / 3]))
    clean = pixel_map(method(model, X_START))
    torch.testing.assert_close(kendall(clean, pixel_map(method(model, tau.x_adv))), tau.score)

    # The registry selects by the similarity it reports, or by the criterion asked for.
    y = torch.zeros(1, dtype=torch.long)
    options = {"eps": 0.5, "step_size": ALPHA, "steps": 4, "k": 2}
    reported = compute_metrics(
        ["topk_intersection@topk_attack", "kendall@topk_attack"], model, X_START, y, method,
        options={"topk_intersection@topk_attack": options, "kendall@topk_attack": options},
    )
    assert reported["topk_intersection@topk_attack"].tolist() == [0.0]
    torch.testing.assert_close(reported["kendall@topk_attack"], torch.tensor([-2 / 3]))
    as_published = compute_metric("topk_intersection@topk_attack", model, X_START, y, method, criterion="kendall", **options)
    assert as_published.tolist() == [0.5]  # the top-k overlap at the Kendall-selected iterate


def test_misclassified_examples_are_skipped_and_counted_apart(trained_shapes: TrainedShapes) -> None:
    model, x, y = trained_shapes.model, trained_shapes.x[:24], trained_shapes.y[:24]
    y = torch.where(torch.arange(24) < 2, (y + 1) % 3, y)  # make sure some are misclassified
    with torch.no_grad():
        wrong = model(x).argmax(1) != y
    assert 0 < int(wrong.sum()) < 24
    result = TopKExplanationAttack(steps=3).attack(model, x, Saliency(), y)
    assert torch.equal(result.attacked, ~wrong)
    assert torch.isnan(result.score[wrong]).all() and torch.isfinite(result.score[~wrong]).all()
    assert torch.equal(result.x_adv[wrong], x[wrong])

    scores = compute_metric("kendall@topk_attack", model, x, y, Saliency(), steps=3)
    assert torch.equal(torch.isnan(scores), wrong)
    wrapper = build_metric("kendall@topk_attack")
    wrapper.update(scores)
    assert int(wrapper.undefined) == int(wrong.sum()) and int(wrapper.count) == int((~wrong).sum())
    # Explaining the predicted class attacks every example.
    assert torch.isfinite(compute_metric("kendall@topk_attack", model, x, None, Saliency(), steps=3)).all()


def test_topk_attack_beats_uniform_noise_and_keeps_the_label(trained_shapes: TrainedShapes) -> None:
    model, x = trained_shapes.model, trained_shapes.x[:32]
    method, eps = Saliency(), 0.1
    k = default_topk(16, 16)
    with torch.no_grad():
        label = model(x).argmax(1)
    clean = pixel_map(method(model, x, label))
    result = TopKExplanationAttack(eps=eps, step_size=0.01, steps=30).attack(model, x, method)
    noisy = perturb(model, x, label, method, "noise", eps=eps)

    attacked_inter = topk_intersection(clean, pixel_map(method(model, result.x_adv, label)), k)
    noise_inter = topk_intersection(clean, pixel_map(method(model, noisy, label)), k)
    # Far lower than noise of the same budget: at least twice the drop.
    assert (1 - attacked_inter.mean()) > 2 * (1 - noise_inter.mean()), (attacked_inter.mean(), noise_inter.mean())
    torch.testing.assert_close(result.score, attacked_inter)  # the kept iterate's value
    with torch.no_grad():
        assert torch.equal(model(result.x_adv).argmax(1), label)
    assert torch.equal(result.label, label)
    assert (result.x_adv - x).abs().max() <= eps + 1e-6
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1


def test_k_attack_and_k_score_are_separate(trained_shapes: TrainedShapes) -> None:
    model, x = trained_shapes.model, trained_shapes.x[:8]
    method = Saliency()
    with torch.no_grad():
        label = model(x).argmax(1)
    clean = pixel_map(method(model, x, label))
    result = TopKExplanationAttack(steps=5, k_attack=60, k_score=20).attack(model, x, method)
    torch.testing.assert_close(result.score, topk_intersection(clean, pixel_map(method(model, result.x_adv, label)), 20))
    # A different attacked set moves x differently; the scored k stays the one asked for.
    other = TopKExplanationAttack(steps=5, k_attack=10, k_score=20).attack(model, x, method)
    assert not torch.equal(other.x_adv, result.x_adv)
    # k is shorthand for both.
    both = TopKExplanationAttack(steps=5, k=20).attack(model, x, method)
    torch.testing.assert_close(both.x_adv, TopKExplanationAttack(steps=5, k_attack=20, k_score=20).attack(model, x, method).x_adv)


def test_metrics_of_one_call_share_one_attack_and_match_the_functional_form(trained_shapes: TrainedShapes) -> None:
    model, x, y = trained_shapes.model, trained_shapes.x[:6], trained_shapes.y[:6]

    class Counting(Saliency):
        calls = 0

        def attribute(self, model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
            Counting.calls += 1
            return super().attribute(model, inputs, target)

    names = ["topk_intersection@topk_attack", "spearman@topk_attack", "kendall@topk_attack"]
    options = {name: {"steps": 4} for name in names}
    joint = compute_metrics(names, model, x, y, Counting(), options=options)
    joint_calls, Counting.calls = Counting.calls, 0
    alone = {name: compute_metric(name, model, x, y, Counting(), steps=4) for name in names}
    assert joint_calls < Counting.calls / 2  # one trajectory instead of three
    functional = explanation_robustness(
        model, x, y, Saliency(), "topk_attack", similarities=("topk_intersection", "spearman", "kendall"), steps=4
    )
    for name in names:
        torch.testing.assert_close(joint[name], alone[name], equal_nan=True)
        torch.testing.assert_close(joint[name], functional[name.split("@")[0]], equal_nan=True)


def test_topk_attack_with_no_steps_returns_the_input(trained_shapes: TrainedShapes) -> None:
    x = trained_shapes.x[:4]
    result = TopKExplanationAttack(steps=0).attack(trained_shapes.model, x, Saliency())
    assert torch.equal(result.x_adv, x)
    assert torch.equal(result.score, torch.ones(4))
    assert torch.equal(result.selections["topk_intersection"].step, torch.zeros(4, dtype=torch.long))
    assert torch.equal(result.first_flip, torch.zeros(4, dtype=torch.long))


def test_topk_attack_leaves_the_model_as_found(trained_shapes: TrainedShapes) -> None:
    model = trained_shapes.model
    relus = [name for name, m in model.named_modules() if isinstance(m, nn.ReLU)]
    model.train()
    first = next(model.parameters())
    first.grad = torch.ones_like(first)
    x = trained_shapes.x[:4].clone()
    try:
        TopKExplanationAttack(steps=3, criteria=("topk_intersection", "kendall")).attack(model, x, Saliency())
        assert model.training and all(m.training for m in model.modules())
        assert [name for name, m in model.named_modules() if isinstance(m, nn.ReLU)] == relus
        assert torch.equal(first.grad, torch.ones_like(first))
        assert all(p.grad is None for p in list(model.parameters())[1:])
        assert not x.requires_grad
    finally:
        model.eval()
        first.grad = None


def test_chen_protocols_hold_the_published_settings() -> None:
    mnist = chen_protocol("mnist")
    assert (mnist.eps, mnist.k_attack, mnist.k_score, mnist.steps, mnist.step_size, mnist.ig_steps) == (0.3, 200, 100, 100, 0.01, 100)
    attack = mnist.attack()
    assert (attack.k_attack, attack.k_score, attack.criteria) == (200, 100, ("kendall",))
    assert mnist.integrated_gradients().rule == "riemann_right"
    assert mnist.metric_options(select_as_published=True)["criterion"] == "kendall"
    assert CHEN_PROTOCOLS["gtsrb"].eps == pytest.approx(8 / 255)
    with pytest.raises(ValueError, match="dataset must be one of"):
        chen_protocol("cifar10")


def test_topk_attack_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="eps must be"):
        TopKExplanationAttack(eps=2.0)
    with pytest.raises(ValueError, match="step_size must be"):
        TopKExplanationAttack(step_size=0)
    with pytest.raises(ValueError, match="k must be"):
        TopKExplanationAttack(k=0)
    with pytest.raises(ValueError, match="k_score must be"):
        TopKExplanationAttack(k_score=0)
    with pytest.raises(ValueError, match="k sets both k_attack and k_score"):
        TopKExplanationAttack(k=10, k_attack=20)
    with pytest.raises(ValueError, match="criteria must be"):
        TopKExplanationAttack(criteria="pearson")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="norm must be one of"):
        TopKExplanationAttack(norm="l1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k sets both k_attack and k_score"):
        compute_metric("kendall@topk_attack", nn.Identity(), torch.rand(1, 1, 4, 4), None, Saliency(), k=3, k_score=4)
