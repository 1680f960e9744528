"""The one projected-ascent loop: its update, its hooks, and its three users unchanged.

The references below are frozen copies of the loops PGD, the in-ball maximisation and the top-k
explanation attack ran before they shared :func:`attacks.ascent.projected_ascent`; the users
must give the same iterates bit for bit on a tiny model (CPU, one thread, deterministic).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks import PGD, TopKExplanationAttack, per_example_cross_entropy, projected_ascent
from attacks.ascent import step_displacement
from attacks.explanation import pixel_map, softplus_relus
from attacks.threat_models import make_threat_model
from attributions import Saliency
from common.modes import module_mode
from losses.input_gradients import maximise_in_ball, per_example_logit_gradient
from tests.tiny import shapes_batch, single_thread, smooth_mlp, tiny_cnn

__all__ = ["single_thread"]

pytestmark = pytest.mark.usefixtures("single_thread")

# ---------------------------------------------------------------------------------------------
# Frozen references: the loops as they were written before the shared loop.


def reference_pgd_ascend(attack: PGD, model: nn.Module, x: Tensor, target: Tensor, x_adv: Tensor) -> Tensor:
    """PGD._ascend as it was (cross-entropy)."""
    for _ in range(attack.steps):
        x_adv.requires_grad_(True)
        logits = model(x_adv)
        loss = per_example_cross_entropy(logits, target)
        (grad,) = torch.autograd.grad(loss.sum(), [x_adv])
        stepped = attack.threat.project(x_adv.detach() + attack.threat.step(grad, attack.step_size), x)
        if attack.early_stop:
            moving = (logits.detach().argmax(dim=1) == target).view(-1, *([1] * (x.dim() - 1)))
            stepped = torch.where(moving, stepped, x_adv.detach())
        x_adv = stepped
    return x_adv.detach()


def reference_maximise_in_ball(attack: PGD, model: nn.Module, x: Tensor, objective: Callable[[Tensor], Tensor]) -> Tensor:
    """losses.input_gradients.maximise_in_ball as it was."""
    x = x.detach()
    x_adv = attack.initial_point(x)
    with torch.enable_grad(), module_mode(model, attack.model_mode):
        for _ in range(attack.steps):
            x_adv.requires_grad_(True)
            value = objective(x_adv)
            (grad,) = torch.autograd.grad(value.sum(), [x_adv], allow_unused=True, materialize_grads=True)
            x_adv = attack.threat.project(x_adv.detach() + attack.threat.step(grad, attack.step_size), x)
    return x_adv.detach()


class ReferenceTopK(TopKExplanationAttack):
    """The top-k attack with its loop as it was (descent on the share, row subsets, in place)."""

    def _run(self, model, method, differentiable, x, target, label, top_attack, scorers, rows, best_x, best, best_step, first_flip):  # type: ignore[no-untyped-def]
        x_t = x.clone()
        active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        for step in range(1, self.steps + 1):
            local = active.nonzero().flatten()
            if local.numel() == 0:
                break
            xr, x0, tr = x_t[local], x[local], target[local]
            xg = xr.detach().requires_grad_(True)
            with softplus_relus(model, self.softplus_beta):
                maps = pixel_map(differentiable(model, xg, tr)).flatten(1)
            share = (maps * top_attack[local]).sum(dim=1) / maps.sum(dim=1).clamp_min(1e-12)
            (grad,) = torch.autograd.grad(share.sum(), [xg], allow_unused=True)
            grad = torch.zeros_like(xg) if grad is None else grad
            x_new = self.threat.project(xr - self.threat.step(grad, self.step_size), x0)
            with torch.no_grad():
                kept = model(x_new).argmax(dim=1) == label[local]
            maps = pixel_map(method(model, x_new, tr)).flatten(1)
            batch_rows = rows[local]
            flipped_now = ~kept & (first_flip[batch_rows] == 0)
            first_flip[batch_rows[flipped_now]] = step
            for c, score in scorers.items():
                value = score(local, maps)
                better = kept & (value < best[c][batch_rows])
                best_x[c][batch_rows[better]] = x_new[better]
                best[c][batch_rows[better]] = value[better]
                best_step[c][batch_rows[better]] = step
            if self.stop_at_label_flip:
                x_t[local[kept]] = x_new[kept]
                active[local[~kept]] = False
            else:
                x_t[local] = x_new


def _same_as(cls: type[TopKExplanationAttack], attack: TopKExplanationAttack) -> TopKExplanationAttack:
    twin = cls.__new__(cls)
    twin.__dict__.update(attack.__dict__)
    return twin


# ---------------------------------------------------------------------------------------------
# The three users give what their old loops gave.


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("early_stop", [False, True])
@pytest.mark.parametrize("model_mode", ["eval", "train"])
def test_pgd_gives_the_old_loops_iterates(norm: str, early_stop: bool, model_mode: str) -> None:
    model = tiny_cnn()
    x, y = shapes_batch(12)
    eps, alpha = (0.2, 0.05) if norm == "linf" else (1.5, 0.4)
    attack = PGD(eps=eps, step_size=alpha, steps=6, norm=norm, early_stop=early_stop, model_mode=model_mode, seed=1)  # type: ignore[arg-type]
    start = attack.initial_point(x)
    with module_mode(model, model_mode):  # type: ignore[arg-type]
        expected = reference_pgd_ascend(attack, model, x, y, start.clone())
    torch.manual_seed(0)
    got = attack(model, x, y)
    assert torch.equal(got, expected)
    assert not torch.equal(got, start)  # the search moved


def test_in_ball_maximisation_gives_the_old_loops_iterates() -> None:
    model = tiny_cnn(activation="softplus")
    x, y = shapes_batch(8)
    attack = PGD(eps=0.15, step_size=0.04, steps=4, seed=3)
    with torch.enable_grad():
        x_leaf = x.clone().requires_grad_(True)
        reference = per_example_logit_gradient(x_leaf, model(x_leaf), y, create_graph=False).detach()

    def cosine_distance(x_adv: Tensor) -> Tensor:  # attribution stability's adversarial search
        g = per_example_logit_gradient(x_adv, model(x_adv), y, create_graph=True)
        return 1.0 - F.cosine_similarity(g.flatten(1), reference.flatten(1))

    expected = reference_maximise_in_ball(attack, model, x, cosine_distance)
    got = maximise_in_ball(attack, model, x, cosine_distance)
    assert torch.equal(got, expected)
    assert not torch.equal(got, attack.initial_point(x))


@pytest.mark.parametrize("stop_at_label_flip", [False, True])
def test_topk_attack_gives_the_old_loops_selections(stop_at_label_flip: bool) -> None:
    torch.manual_seed(0)  # a ReLU MLP whose labels vary and flip along the trajectories (seed 0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
    x = torch.rand(10, 1, 8, 8)
    attack = TopKExplanationAttack(
        eps=0.3, step_size=0.05, steps=8, k=6, criteria=("topk_intersection", "kendall"), stop_at_label_flip=stop_at_label_flip
    )
    got = attack.attack(model, x, Saliency())
    expected = _same_as(ReferenceTopK, attack).attack(model, x, Saliency())
    assert torch.equal(got.first_flip, expected.first_flip)
    for c in attack.criteria:
        assert torch.equal(got.selections[c].x_adv, expected.selections[c].x_adv)
        torch.testing.assert_close(got.selections[c].score, expected.selections[c].score, equal_nan=True, rtol=0, atol=0)
        assert torch.equal(got.selections[c].step, expected.selections[c].step)
    assert (got.selections["kendall"].step > 0).any()  # some iterate beat x itself
    if stop_at_label_flip:
        assert (got.first_flip > 0).any(), "the case must exercise the stopping rule"


# ---------------------------------------------------------------------------------------------
# The loop itself.


def test_one_step_is_the_projected_update_of_madry_et_al() -> None:
    """x₁ = Π(x₀ + α·s(∇J)) for J = ⟨w, x⟩ (∇J = w), each step rule, in closed form."""
    x = torch.full((2, 1, 2, 2), 0.5, dtype=torch.float64)
    w = torch.tensor([3.0, -4.0, 0.0, 0.0], dtype=torch.float64).view(1, 1, 2, 2)
    threat = make_threat_model("l2", 10.0)  # a ball too large to bind: only [0, 1] projects

    def linear(x_t: Tensor, rows: Tensor | None) -> Tensor:
        return (x_t * w).flatten(1).sum(1)

    alpha = 0.1
    for rule, expected_step in (("sign", [0.1, -0.1, 0.0, 0.0]), ("l2", [0.06, -0.08, 0.0, 0.0]), ("raw", [0.3, -0.4, 0.0, 0.0])):
        got = projected_ascent(linear, x, "clean", threat, alpha, 1, rule=rule)  # type: ignore[arg-type]
        expected = (0.5 + torch.tensor(expected_step, dtype=torch.float64)).view(1, 1, 2, 2).expand(2, -1, -1, -1)
        torch.testing.assert_close(got, expected)
    # many raw steps leave the box: the projection clamps to [0, 1]
    far = projected_ascent(linear, x, "clean", threat, 1.0, 3, rule="raw")
    assert torch.equal(far.flatten(1)[0], torch.tensor([1.0, 0.0, 0.5, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="rule must be one of"):
        step_displacement("adam", threat, w, alpha)  # type: ignore[arg-type]


def test_linf_ascent_stays_in_the_ball_and_box_and_leaves_inputs_as_found() -> None:
    model = smooth_mlp()
    x = torch.rand(5, 1, 2, 6, dtype=torch.float64)
    x_before = x.clone()
    y = torch.tensor([0, 1, 2, 0, 1])
    threat = make_threat_model("linf", 0.05)
    torch.manual_seed(0)
    out = projected_ascent(lambda x_t, rows: per_example_cross_entropy(model(x_t), y), x, "random", threat, 0.02, 5)
    assert (out - x).abs().max() <= 0.05 + 1e-12 and out.min() >= 0 and out.max() <= 1
    assert torch.equal(x, x_before) and not x.requires_grad and not out.requires_grad
    assert all(p.grad is None for p in model.parameters())
    # the loss went up at every example (a smooth model, small steps)
    with torch.no_grad():
        assert (per_example_cross_entropy(model(out), y) > per_example_cross_entropy(model(x), y)).all()


def test_a_rejected_step_stops_the_example_and_only_the_rest_are_computed() -> None:
    x = torch.full((3, 1, 1, 2), 0.5)
    threat = make_threat_model("linf", 0.5)
    seen_rows: list[list[int]] = []

    def up(x_t: Tensor, rows: Tensor | None) -> Tensor:
        seen_rows.append(list(range(3)) if rows is None else rows.tolist())
        return x_t.flatten(1).sum(1)

    def reject_row_1_at_step_2(step: int, rows: Tensor | None, x_new: Tensor) -> Tensor | None:
        rows = torch.arange(3) if rows is None else rows
        return ~((rows == 1) & (step == 2))

    out = projected_ascent(up, x, "clean", threat, 0.1, 4, after_step=reject_row_1_at_step_2)
    torch.testing.assert_close(out[:, 0, 0, 0], torch.tensor([0.9, 0.6, 0.9]))
    assert seen_rows == [[0, 1, 2], [0, 1, 2], [0, 2], [0, 2]]


def test_an_objective_that_does_not_depend_on_the_input_moves_nothing_when_allowed() -> None:
    x = torch.rand(2, 1, 2, 2)
    threat = make_threat_model("linf", 0.1)
    constant = lambda x_t, rows: torch.zeros(x_t.shape[0])  # noqa: E731
    assert torch.equal(projected_ascent(constant, x, "clean", threat, 0.05, 3, allow_unused=True), x)
    with pytest.raises(RuntimeError):
        projected_ascent(constant, x, "clean", threat, 0.05, 3)
