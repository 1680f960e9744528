"""AutoAttack through the authors' code: the driver equals ``run_standard_evaluation``, the
attacks stay in the threat model, per-example seeding makes results independent of batching,
the caller's model, gradients and random streams are left alone, and nothing is printed."""

from __future__ import annotations

import logging

import pyautoattack
import pytest
import torch
from torch import nn

import attacks.autoattack as aa
from attacks import PGD, AutoAttack
from tests.trained_model import TrainedShapes, train_shapes_model
from tests.tiny import MixedModes, tiny_cnn


@pytest.fixture(scope="module")
def four_classes() -> TrainedShapes:
    """A small CNN trained on 4 classes of synthetic shapes (APGD-T needs 4; about a second)."""
    trained = train_shapes_model(num_classes=4, seed=1)
    assert trained.accuracy > 0.6
    return trained


@pytest.fixture
def short_attacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fewer iterations and queries than the authors' standard settings, so that every sub-attack
    runs in a test's time; the driver does not depend on them."""
    monkeypatch.setattr(aa, "APGD_ITERATIONS", 20)
    monkeypatch.setattr(aa, "FAB_ITERATIONS", 10)
    monkeypatch.setattr(aa, "SQUARE_QUERIES", 150)


def _authors(model: nn.Module, norm: str, eps: float, num_classes: int) -> pyautoattack.AutoAttack:
    """The authors' standard AutoAttack with the settings the short_attacks fixture sets."""
    authors = pyautoattack.AutoAttack(lambda t: model(t).float(), norm=norm, eps=eps, version="standard", seed=0)
    authors.verbose = False
    authors.apgd.n_iter = authors.apgd_targeted.n_iter = 20
    for attack in (authors.apgd, authors.apgd_targeted):  # the checkpoints derived from n_iter in __init__
        attack.n_iter_2, attack.n_iter_min, attack.size_decr = max(int(0.22 * 20), 1), max(int(0.06 * 20), 1), max(int(0.03 * 20), 1)
    authors.fab.n_iter = 10
    authors.square.n_queries = 150
    authors.apgd_targeted.n_target_classes = authors.fab.n_target_classes = num_classes - 1
    return authors


def test_standard_settings_are_the_authors() -> None:
    model = tiny_cnn(num_classes=10)
    for norm in ("Linf", "L2"):
        authors = pyautoattack.AutoAttack(model, norm=norm, eps=0.1, version="standard")
        assert authors.attacks_to_run == list(aa.sub_attacks("standard", 10))
        assert (authors.apgd.n_iter, authors.apgd.n_restarts, authors.apgd.thr_decr) == (aa.APGD_ITERATIONS, aa.APGD_RESTARTS, aa.APGD_RHO)
        targeted = authors.apgd_targeted
        assert (targeted.n_iter, targeted.n_restarts, targeted.n_target_classes) == (aa.APGD_ITERATIONS, aa.APGD_RESTARTS, aa.target_classes(10))
        assert (authors.fab.n_iter, authors.fab.n_restarts, authors.fab.n_target_classes) == (aa.FAB_ITERATIONS, aa.FAB_RESTARTS, aa.target_classes(10))
        assert (authors.square.n_queries, authors.square.p_init, authors.square.rescale_schedule) == (aa.SQUARE_QUERIES, aa.SQUARE_P_INIT, False)
    assert aa.sub_attacks("fast", 10) == ("apgd-ce", "apgd-t")
    assert aa.sub_attacks("fast", 3) == ("apgd-ce", "apgd-dlr") and aa.sub_attacks("standard", 2) == ("apgd-ce", "fab-t", "square")


@pytest.mark.parametrize("norm, eps", [("linf", 0.02), pytest.param("l2", 0.2, marks=pytest.mark.slow)])
def test_the_driver_gives_run_standard_evaluation_exactly(
    four_classes: TrainedShapes, short_attacks: None, norm: str, eps: float
) -> None:
    model, x, y = four_classes.model, four_classes.x[:16], four_classes.y[:16]
    ours = AutoAttack(eps=eps, norm=norm, version="standard", seeding="batch")
    x_ours = ours(model, x, y)
    assert [stage.attack for stage in ours.stages] == ["apgd-ce", "apgd-t", "fab-t", "square"]  # every stage ran
    x_authors, _ = _authors(model, {"linf": "Linf", "l2": "L2"}[norm], eps, 4).run_standard_evaluation(x, y, batch_size=16)
    assert torch.equal(x_ours, x_authors)


@pytest.mark.parametrize("norm, eps", [("linf", 0.02), pytest.param("l2", 0.2, marks=pytest.mark.slow)])
def test_per_example_seeding_gives_each_image_its_result_in_any_batch(
    four_classes: TrainedShapes, short_attacks: None, monkeypatch: pytest.MonkeyPatch, norm: str, eps: float
) -> None:
    monkeypatch.setattr(aa, "SQUARE_QUERIES", 40)  # Square runs once per surviving example and call
    model, x, y = four_classes.model, four_classes.x[:16], four_classes.y[:16]
    attack = AutoAttack(eps=eps, norm=norm, version="standard", seed=3)
    whole = attack(model, x, y)
    assert attack.stages[-1].attack == "square" and attack.stages[-1].attacked > 0
    order = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    parts = torch.cat([attack(model, x[order][:6], y[order][:6]), attack(model, x[order][6:], y[order][6:])])
    # Equal draws; a batched convolution may still differ in the last bit between batch sizes,
    # which an L2 step (g/‖g‖) carries on: equal up to float32 rounding, the same verdicts.
    torch.testing.assert_close(parts, whole[order], rtol=0, atol=1e-5)
    with torch.no_grad():
        assert torch.equal(model(parts).argmax(1), model(whole[order]).argmax(1))
    other_seed = AutoAttack(eps=eps, norm=norm, version="standard", seed=4)(model, x, y)
    assert not torch.allclose(other_seed, whole)  # the seed matters: the draws are real


@pytest.mark.parametrize("norm, eps", [("linf", 0.05), ("l2", 0.5)])
def test_autoattack_stays_in_the_ball_and_is_at_least_as_strong_as_pgd_per_example(
    trained_shapes: TrainedShapes, norm: str, eps: float
) -> None:
    model, x, y = trained_shapes.model, trained_shapes.x, trained_shapes.y
    x_adv = AutoAttack(eps=eps, norm=norm, version="fast")(model, x, y)
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-5).all() and x_adv.min() >= 0 and x_adv.max() <= 1
    pgd = PGD(eps=eps, step_size=eps / 4, steps=10, norm=norm, seed=0)
    with torch.no_grad():
        robust_aa = model(x_adv).argmax(1) == y
        robust_pgd = model(pgd(model, x, y)).argmax(1) == y
        clean = model(x).argmax(1) == y
    assert robust_aa.sum() < clean.sum()  # it does attack
    assert not (robust_aa & ~robust_pgd).any()  # every example AutoAttack leaves standing, PGD does too


def test_autoattack_leaves_modes_grads_flags_inputs_and_rng_as_found(short_attacks: None, capsys, caplog) -> None:
    torch.manual_seed(0)
    model = MixedModes(size=16, num_classes=4).train()
    model.frozen_bn.eval()
    model.conv.weight.requires_grad_(False)  # a frozen layer stays frozen
    modes = {name: m.training for name, m in model.named_modules()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    model.head.weight.grad = torch.ones_like(model.head.weight)  # an accumulated gradient
    running_mean = model.bn.running_mean.clone()
    x, y = torch.rand(8, 1, 16, 16), torch.randint(0, 4, (8,))
    x_before = x.clone()
    rng = torch.get_rng_state()
    attack = AutoAttack(eps=1e-3, version="standard")  # too small to break anything: every stage runs
    with caplog.at_level(logging.DEBUG):
        attack(model, x, y)
    assert [stage.attack for stage in attack.stages] == ["apgd-ce", "apgd-t", "fab-t", "square"]  # FAB-T: .backward()
    assert torch.equal(torch.get_rng_state(), rng)  # the authors' torch.manual_seed was undone
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    assert torch.equal(model.head.weight.grad, torch.ones_like(model.head.weight))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "head.weight")
    assert torch.equal(model.bn.running_mean, running_mean)  # eval mode during the attack
    assert torch.equal(x, x_before) and not x.requires_grad
    assert capsys.readouterr() == ("", "") and not caplog.records  # nothing printed or logged


def test_autoattack_works_under_inference_mode(four_classes: TrainedShapes) -> None:
    model, x, y = four_classes.model, four_classes.x[:12], four_classes.y[:12]
    attack = AutoAttack(eps=0.03, version="fast")
    expected = attack(model, x, y)
    with torch.inference_mode():
        got = attack(model, x.clone(), y.clone())  # inference tensors, as Lightning's validation makes them
    assert torch.equal(got, expected)


def test_a_saturated_softmax_fools_cross_entropy_pgd_but_not_margin_dlr_or_autoattack(trained_shapes: TrainedShapes) -> None:
    """Logits × 10⁴: the cross-entropy's gradient underflows to zero for confidently correct
    examples, so PGD on it stands still; the margin and DLR losses, and AutoAttack (APGD-DLR
    here, 3 classes), do not care about the scale."""
    model = nn.Sequential(trained_shapes.model, _Scale(1e4)).eval()
    x, y = trained_shapes.x[:32], trained_shapes.y[:32]
    eps = 0.1

    def robust(attack: PGD | AutoAttack) -> float:
        with torch.no_grad():
            return (model(attack(model, x, y)).argmax(1) == y).float().mean().item()

    ce = robust(PGD(eps=eps, step_size=eps / 4, steps=20, seed=0))
    margin = robust(PGD(eps=eps, step_size=eps / 4, steps=20, seed=0, loss="margin"))
    dlr = robust(PGD(eps=eps, step_size=eps / 4, steps=20, seed=0, loss="dlr"))
    autoattack = robust(AutoAttack(eps=eps, version="fast"))
    assert ce > 0.5  # cross-entropy PGD reports a robust model ...
    assert max(margin, dlr, autoattack) < ce - 0.3  # ... the others break it


class _Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.factor


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"version": "plus"}, "version"),
        ({"seeding": "global"}, "seeding"),
        ({"eps": 1.5}, "eps"),
        ({"eps": -0.1}, "eps"),
        ({"norm": "l1"}, "norm"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_autoattack_arguments_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must"):
        AutoAttack(**kwargs)


def test_names_and_radii() -> None:
    assert AutoAttack(version="standard").name == "autoattack" and AutoAttack(version="fast").name == "autoattack-fast"
    scaled = AutoAttack(eps=0.1, norm="l2").at_eps(0.5)
    assert scaled.eps == 0.5 and scaled.norm == "l2"
    x = torch.rand(3, 1, 16, 16)
    assert torch.equal(AutoAttack(eps=0.0)(tiny_cnn(), x, torch.zeros(3, dtype=torch.long)), x)
