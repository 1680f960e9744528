"""PGD: threat-model invariants, closed-form optima on linear models, side effects."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attacks import PGD, make_threat_model, per_example_cross_entropy
from common.modes import module_mode
from lightning_modules import build_model
from tests.conftest import LinearImageClassifier
from tests.tiny import MixedModes


def _inputs(batch: int = 16, shape: tuple[int, ...] = (1, 8, 8)) -> torch.Tensor:
    x = torch.rand(batch, *shape)
    x[0] = 0.0  # pixels on the box boundary exercise the [0, 1] clamp
    x[1] = 1.0
    return x


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 0.5)])
@pytest.mark.parametrize("restarts", [1, 3])
def test_pgd_stays_inside_eps_ball_and_image_box(norm: str, eps: float, restarts: int) -> None:
    model = build_model("small_cnn", 3, (1, 8, 8), (0.5,), (0.25,), backbone_kwargs={"width": 4, "hidden": 8})
    x, y = _inputs(), torch.randint(0, 3, (16,))
    x_adv = PGD(eps=eps, step_size=eps, steps=4, norm=norm, restarts=restarts)(model, x, y)
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-6).all()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert not torch.equal(x_adv, x)


def test_linf_pgd_reaches_the_closed_form_optimum_of_a_linear_model(linear_model: LinearImageClassifier) -> None:
    # For a linear binary classifier the worst L∞ perturbation of CE moves every pixel by ε
    # against the label's margin: δ* = ε·sign(∇ₓ(z_other − z_y)) = ε·sign(w_other − w_y).
    eps = 0.05
    x = 0.1 + 0.8 * torch.rand(32, 1, 8, 8)  # far from the box edges
    y = torch.randint(0, 2, (32,))
    w = linear_model.linear.weight.detach().view(2, 1, 8, 8)
    direction = (w[1 - y] - w[y]).sign()
    expected = x + eps * direction
    x_adv = PGD(eps=eps, step_size=eps / 4, steps=10, random_start=False)(linear_model, x, y)
    torch.testing.assert_close(x_adv, expected)


def test_l2_pgd_reaches_the_closed_form_optimum_of_a_linear_model(linear_model: LinearImageClassifier) -> None:
    # Under L2 the optimum is δ* = ε·g/‖g‖ with g = w_other − w_y.
    eps = 0.3
    x = 0.25 + 0.5 * torch.rand(8, 1, 8, 8)
    y = torch.randint(0, 2, (8,))
    w = linear_model.linear.weight.detach().view(2, 1, 8, 8)
    g = w[1 - y] - w[y]
    expected = x + eps * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    x_adv = PGD(eps=eps, step_size=eps / 2, steps=10, norm="l2", random_start=False)(linear_model, x, y)
    torch.testing.assert_close(x_adv, expected, atol=1e-5, rtol=1e-4)


def test_pgd_raises_the_loss_of_a_trained_model() -> None:
    torch.manual_seed(0)
    # Two classes: bright or dark centre; a small CNN learns it in a few dozen steps.
    x = torch.rand(128, 1, 8, 8) * 0.4 + 0.3
    y = torch.randint(0, 2, (128,))
    x[:, :, 2:6, 2:6] += (y.float() * 2 - 1).view(-1, 1, 1, 1) * 0.25
    model = build_model("small_cnn", 2, (1, 8, 8), (0.5,), (0.25,), backbone_kwargs={"width": 4, "hidden": 16})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        clean = F.cross_entropy(model(x), y, reduction="none")
    assert (model(x).argmax(1) == y).float().mean() > 0.9
    x_adv = PGD(eps=0.1, step_size=0.025, steps=10)(model, x, y)
    with torch.no_grad():
        adversarial = F.cross_entropy(model(x_adv), y, reduction="none")
    assert (adversarial >= clean - 1e-6).float().mean() > 0.95
    assert adversarial.mean() > 2 * clean.mean()


@pytest.mark.parametrize("model_mode", ["eval", "train"])
def test_pgd_leaves_modes_and_grads_as_it_found_them(model_mode: str) -> None:
    model = MixedModes(size=8, num_classes=3).train()
    model.frozen_bn.eval()
    modes = {name: m.training for name, m in model.named_modules()}
    model.head.weight.grad = torch.ones_like(model.head.weight)  # an accumulated gradient
    running_mean = model.bn.running_mean.clone()
    x, y = _inputs(), torch.randint(0, 3, (16,))
    x_before = x.clone()
    PGD(eps=0.1, step_size=0.05, steps=3, model_mode=model_mode)(model, x, y)
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert torch.equal(model.head.weight.grad, torch.ones_like(model.head.weight))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "head.weight")
    assert torch.equal(x, x_before) and not x.requires_grad
    if model_mode == "eval":  # BatchNorm used running statistics and did not update them
        assert torch.equal(model.bn.running_mean, running_mean)


def test_module_mode_restores_flags_when_the_body_raises() -> None:
    model = MixedModes(size=8, num_classes=3).train()
    model.frozen_bn.eval()
    with pytest.raises(RuntimeError), module_mode(model, "eval"):
        assert not model.training
        raise RuntimeError("boom")
    assert model.training and not model.frozen_bn.training


def test_pgd_works_under_inference_mode_and_matches_grad_mode() -> None:
    model = build_model("small_cnn", 3, (1, 8, 8), (0.5,), (0.25,), backbone_kwargs={"width": 4, "hidden": 8})
    x, y = _inputs(), torch.randint(0, 3, (16,))
    attack = PGD(eps=0.1, step_size=0.03, steps=3, seed=1)
    expected = attack(model, x, y)
    with torch.inference_mode():
        x_i, y_i = x.clone(), y.clone()  # inference tensors, as Lightning's validation makes them
        got = attack(model, x_i, y_i)
    torch.testing.assert_close(got, expected)


def test_pgd_under_bf16_autocast_stays_valid_and_raises_the_loss(linear_model: LinearImageClassifier) -> None:
    x = 0.1 + 0.8 * torch.rand(32, 1, 8, 8)
    y = torch.randint(0, 2, (32,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_adv = PGD(eps=0.05, step_size=0.02, steps=5)(linear_model, x, y)
        clean = F.cross_entropy(linear_model(x).float(), y)
        adversarial = F.cross_entropy(linear_model(x_adv).float(), y)
    assert x_adv.dtype == torch.float32
    assert ((x_adv - x).abs().amax() <= 0.05 + 1e-6) and x_adv.min() >= 0 and x_adv.max() <= 1
    assert adversarial > clean


def test_seeded_attack_is_repeatable_and_leaves_the_global_rng_alone(linear_model: LinearImageClassifier) -> None:
    x, y = _inputs(), torch.randint(0, 2, (16,))
    attack = PGD(eps=0.1, step_size=0.01, steps=1, seed=7)
    state = torch.get_rng_state()
    first, second = attack(linear_model, x, y), attack(linear_model, x, y)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, second)


def test_restarts_keep_the_worst_case_per_example() -> None:
    model = build_model("small_cnn", 3, (1, 8, 8), (0.5,), (0.25,), backbone_kwargs={"width": 4, "hidden": 8}).eval()
    x, y = _inputs(), torch.randint(0, 3, (16,))
    # With a seed, the first restart of a multi-restart attack is the single-restart attack.
    single = PGD(eps=0.1, step_size=0.02, steps=2, seed=3, restarts=1)(model, x, y)
    multi = PGD(eps=0.1, step_size=0.02, steps=2, seed=3, restarts=4)(model, x, y)
    with torch.no_grad():
        loss_single = F.cross_entropy(model(single), y, reduction="none")
        loss_multi = F.cross_entropy(model(multi), y, reduction="none")
    assert (loss_multi >= loss_single - 1e-6).all()
    assert (loss_multi > loss_single + 1e-6).any()


def test_zero_eps_returns_the_clean_input(linear_model: LinearImageClassifier) -> None:
    x, y = _inputs(), torch.randint(0, 2, (16,))
    assert torch.equal(PGD(eps=0.0, step_size=0.1, steps=3)(linear_model, x, y), x)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"eps": -0.1}, "eps"),
        ({"eps": 1.5}, "eps"),
        ({"norm": "l3"}, "norm"),
        ({"step_size": 0.0}, "step_size"),
        ({"steps": -1}, "steps"),
        ({"restarts": 0}, "restarts"),
        ({"model_mode": "test"}, "model_mode"),
    ],
)
def test_bad_attack_arguments_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must"):
        PGD(**kwargs)


def test_l2_eps_may_exceed_one() -> None:
    assert make_threat_model("l2", 2.0).eps == 2.0


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 0.5)])
def test_seeded_attack_gives_an_image_the_same_start_in_any_batch(norm: str, eps: float) -> None:
    # Evaluation under DDP splits a batch across processes: a seeded attack must not depend
    # on which other images share the batch, or on their order.
    model = build_model("small_cnn", 3, (1, 8, 8), (0.5,), (0.25,), backbone_kwargs={"width": 4, "hidden": 8}).eval()
    x, y = _inputs(12), torch.randint(0, 3, (12,))
    attack = PGD(eps=eps, step_size=eps / 4, steps=2, norm=norm, seed=11, restarts=2)
    whole = attack(model, x, y)
    order = torch.randperm(12)
    shuffled = attack(model, x[order], y[order])
    halves = torch.cat([attack(model, x[:5], y[:5]), attack(model, x[5:], y[5:])])
    torch.testing.assert_close(shuffled, whole[order])
    torch.testing.assert_close(halves, whole)
    other_seed = PGD(eps=eps, step_size=eps / 4, steps=2, norm=norm, seed=12, restarts=2)(model, x, y)
    assert not torch.allclose(other_seed, whole)


# -- attack losses: cross-entropy, margin (Carlini–Wagner), DLR (Croce & Hein) ------------------


def test_margin_and_dlr_losses_are_their_closed_forms_and_dlr_is_the_authors() -> None:
    from pyautoattack.autopgd_base import APGDAttack

    from attacks import dlr_loss, margin_loss

    z = torch.tensor([[3.0, 1.0, 0.0, -1.0], [0.5, 2.0, 1.5, 0.0]])
    y = torch.tensor([0, 2])
    # Example 0 is right (best other 1.0); example 1 is wrong (best other 2.0 > 1.5).
    torch.testing.assert_close(margin_loss(z, y), torch.tensor([1.0 - 3.0, 2.0 - 1.5]))
    torch.testing.assert_close(dlr_loss(z, y), torch.tensor([-(3.0 - 1.0) / (3.0 - 0.0), -(1.5 - 2.0) / (2.0 - 0.5)]))
    logits, labels = torch.randn(64, 10), torch.randint(0, 10, (64,))
    authors = APGDAttack(lambda t: t, eps=0.1).dlr_loss(logits, labels)
    torch.testing.assert_close(dlr_loss(logits, labels), authors)
    # DLR ignores a shift and a positive rescaling of the logits (a saturated softmax changes nothing).
    torch.testing.assert_close(dlr_loss(1e4 * logits + 7.0, labels), dlr_loss(logits, labels), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="^loss 'dlr' needs at least 3 classes"):
        dlr_loss(torch.randn(4, 2), torch.zeros(4, dtype=torch.long))


def test_pgd_losses_by_name_radii_and_class_counts() -> None:
    with pytest.raises(ValueError, match="^loss must be one of"):
        PGD(loss="hinge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^loss 'dlr' needs at least 3 classes"):
        PGD(loss="dlr").check_num_classes(2)
    PGD(loss="margin").check_num_classes(2)
    assert PGD(steps=40, loss="margin").name == "pgd40-margin" and PGD(restarts=5, loss="dlr").name == "pgd10x5-dlr"
    attack = PGD(eps=0.1, step_size=0.025, steps=10, loss="dlr", seed=3)
    scaled = attack.at_eps(0.05)
    assert (scaled.eps, scaled.threat.eps, scaled.loss, scaled.seed) == (0.05, 0.05, "dlr", 3)
    assert scaled.step_size == pytest.approx(0.0125)  # α/ε kept
    assert attack.eps == 0.1  # the template is left as it was
    with pytest.raises(ValueError, match="^eps must be in"):
        attack.at_eps(1.5)
    assert "loss=dlr" in repr(attack)  # the objectives' shared-step cache keys an attack's settings by its repr


@pytest.mark.parametrize("loss", ["margin", "dlr"])
def test_margin_and_dlr_pgd_raise_their_loss_and_stay_in_the_ball(loss: str) -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", 3, (1, 8, 8), (0.5,), (0.25,), backbone_kwargs={"width": 4, "hidden": 8}).eval()
    x, y = _inputs(), torch.randint(0, 3, (16,))
    x_adv = PGD(eps=0.1, step_size=0.03, steps=5, seed=0, loss=loss)(model, x, y)  # type: ignore[arg-type]
    assert ((x_adv - x).abs().amax() <= 0.1 + 1e-6) and x_adv.min() >= 0 and x_adv.max() <= 1
    from attacks.attack_losses import LOSS_FUNCTIONS

    with torch.no_grad():
        assert LOSS_FUNCTIONS[loss](model(x_adv), y).mean() > LOSS_FUNCTIONS[loss](model(x), y).mean()


def test_early_stop_freezes_an_example_once_it_is_misclassified_as_wong_et_al() -> None:
    """Examples the model misclassifies at the start keep their start; the others move, and
    an example stops at the first iterate where it is misclassified (the step from there is
    not taken)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.rand(32, 1, 4, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:8] = (y[:8] + 1) % 3  # misclassified from the start
    attack = PGD(eps=0.3, step_size=0.05, steps=10, random_start=False, early_stop=True)
    x_adv = attack(model, x, y)
    assert torch.equal(x_adv[:8], x[:8])  # never moved
    assert (x_adv[8:] - x[8:]).abs().amax() > 0
    # Replay: each example's iterates under the plain attack; early stop keeps the first
    # misclassified one (or the last iterate when it never flips).
    plain = PGD(eps=0.3, step_size=0.05, steps=1, random_start=False)
    iterate, stopped = x.clone(), torch.zeros(32, dtype=torch.bool)
    for _ in range(10):
        with torch.no_grad():
            stopped |= model(iterate).argmax(1) != y
        nxt = plain.threat.project(plain._ascend(model, x, y, per_example_cross_entropy, iterate.clone()), x)
        iterate = torch.where(stopped.view(-1, 1, 1, 1), iterate, nxt)
    torch.testing.assert_close(x_adv, iterate)
    assert "early_stop=True" in repr(attack)
    with pytest.raises(ValueError, match="early_stop needs class labels"):
        attack.perturb(model, x, torch.rand(32, 3), lambda logits, t: (logits * t).sum(1))
