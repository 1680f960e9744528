"""Fast adversarial training: catastrophic-overfitting watch, its three actions, and the stop."""

from __future__ import annotations

import pytest
import torch
from pytorch_lightning import Trainer
from torch import Tensor, nn

from attacks import PGD, FGSMRandomStart
from datamodules import SyntheticShapes
from lightning_modules import RobustClassifier
from losses import ERM, FastAdversarialTraining, ObjectiveOutput, StepContext
from losses.base import attack_key


def constant_model(favoured: int) -> nn.Module:
    """Predicts class ``favoured`` whatever the input (zero weights keep the input in the graph)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.nn.functional.one_hot(torch.tensor(favoured), 3).float() * 5)
    return model


ROBUST, COLLAPSED = constant_model(0), constant_model(1)  # PGD accuracy 1 and 0 on labels 0


def batch() -> tuple[Tensor, Tensor]:
    return torch.rand(8, 1, 4, 4), torch.zeros(8, dtype=torch.long)


def run_steps(objective: FastAdversarialTraining, models: list[nn.Module]) -> list[ObjectiveOutput]:
    x, y = batch()
    return [objective(model, x, y) for model in models]


def fast_at(**kwargs) -> FastAdversarialTraining:
    options = {"attack": FGSMRandomStart(eps=0.1), "co_check_every": 2, "co_check_size": 4}
    options.update(kwargs)
    return FastAdversarialTraining(**options)


def test_collapse_of_pgd_accuracy_is_detected_and_logged() -> None:
    objective = fast_at(on_catastrophic_overfitting="warn")
    with pytest.warns(UserWarning, match="catastrophic overfitting"):
        outs = run_steps(objective, [ROBUST, ROBUST, COLLAPSED, COLLAPSED])
    assert [float(o.logs["co_detected"]) for o in outs] == [0.0, 0.0, 1.0, 1.0]
    assert [float(o.logs["co_pgd_acc"]) for o in outs] == [1.0, 1.0, 0.0, 0.0]  # the latest check
    assert objective.stop_requested is None
    assert bool(objective.state_dict()["co_detected"])  # saved in checkpoints


def test_with_warn_the_checks_go_on_after_a_detection_and_warn_once() -> None:
    """A false alarm early in training (MNIST at ε = 0.3 swings by more than co_drop while it
    learns) must not freeze the logged curve: a recovery shows."""
    objective = fast_at(on_catastrophic_overfitting="warn")
    with pytest.warns(UserWarning, match="catastrophic overfitting") as caught:
        outs = run_steps(objective, [ROBUST, ROBUST, COLLAPSED, COLLAPSED, ROBUST, ROBUST])
    assert len([w for w in caught if "catastrophic overfitting" in str(w.message)]) == 1
    assert [float(o.logs["co_pgd_acc"]) for o in outs] == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    assert [float(o.logs["co_detected"]) for o in outs] == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]


def test_no_detection_while_accuracy_holds() -> None:
    objective = fast_at()
    outs = run_steps(objective, [ROBUST] * 6)
    assert all(float(o.logs["co_detected"]) == 0 for o in outs)


def test_no_check_during_the_eps_warmup() -> None:
    objective = fast_at(eps_warmup_steps=4)
    outs = run_steps(objective, [ROBUST, ROBUST, COLLAPSED, COLLAPSED, COLLAPSED, COLLAPSED])
    checked = [i for i, o in enumerate(outs) if "co_pgd_acc" in o.logs]
    assert checked == [4, 5]  # fraction reaches 1 at step 3; the first check is the next multiple of 2
    assert float(outs[-1].logs["co_detected"]) == 0  # one check: nothing to compare with yet


def test_stop_action_requests_the_end_of_training() -> None:
    objective = fast_at(on_catastrophic_overfitting="stop")
    run_steps(objective, [ROBUST, ROBUST])
    assert objective.stop_requested is None
    run_steps(objective, [COLLAPSED])
    assert objective.stop_requested is not None and "catastrophic overfitting" in objective.stop_requested


def test_fallback_action_trains_on_pgd_from_then_on() -> None:
    fallback = PGD(eps=0.1, step_size=0.025, steps=3)
    objective = fast_at(on_catastrophic_overfitting="fallback_to_pgd", fallback_attack=fallback)
    x, y = batch()
    keys = []
    with pytest.warns(UserWarning, match="goes on with PGD"):
        for model in [ROBUST, ROBUST, COLLAPSED, COLLAPSED]:
            context = StepContext()
            objective(model, x, y, context)
            keys.append([k[1] for k in context.computed if k[0] == "adversarial"])
    fgsm = attack_key(objective.attack)
    assert keys == [[fgsm], [fgsm], [attack_key(fallback)], [attack_key(fallback)]]


def test_a_resumed_run_keeps_the_decision_and_the_fallback() -> None:
    objective = fast_at(on_catastrophic_overfitting="fallback_to_pgd")
    with pytest.warns(UserWarning):
        run_steps(objective, [ROBUST, ROBUST, COLLAPSED])
    resumed = fast_at(on_catastrophic_overfitting="fallback_to_pgd")
    resumed.load_state_dict(objective.state_dict())
    assert resumed.falling_back and int(resumed.steps_seen) == 3
    out = run_steps(resumed, [ROBUST])[0]
    assert float(out.logs["co_detected"]) == 1.0 and "co_pgd_acc" not in out.logs  # no check after detection


def test_default_check_attack_is_seeded_pgd_at_the_training_eps() -> None:
    objective = FastAdversarialTraining(FGSMRandomStart(eps=0.3))
    assert (objective.co_attack.eps, objective.co_attack.steps, objective.co_attack.seed) == (0.3, 10, 0)
    assert objective.co_attack.step_size == pytest.approx(0.075)
    assert objective.fallback_attack.seed is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"co_check_every": -1}, "co_check_every"),
        ({"co_check_size": 0}, "co_check_size"),
        ({"co_drop": 0.0}, "co_drop"),
        ({"on_catastrophic_overfitting": "ignore"}, "on_catastrophic_overfitting"),
    ],
)
def test_bad_options_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field} must be"):
        FastAdversarialTraining(**kwargs)


class StopsAfter(ERM):
    """ERM that asks to stop once it has run ``steps`` times."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps
        self.calls = 0

    @property
    def stop_requested(self) -> str | None:
        return "enough" if self.calls >= self.steps else None

    def forward(self, model, x, y, context=None):  # type: ignore[override]
        self.calls += 1
        return super().forward(model, x, y, context)


def test_lightning_module_ends_the_fit_when_the_objective_asks(tmp_path) -> None:
    data = SyntheticShapes(image_size=16, num_classes=2, train_size=64, val_size=8, test_size=8, batch_size=8)
    model = RobustClassifier(
        num_classes=2,
        input_shape=(1, 16, 16),
        backbone_kwargs={"width": 4, "hidden": 8},
        objective=StopsAfter(3),
        eval_attack=None,
    )
    trainer = Trainer(
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    with pytest.warns(UserWarning, match="training stops after this step: enough"):
        trainer.fit(model, data)
    assert trainer.global_step == 3


def test_unclipped_start_takes_the_gradient_at_x_plus_delta_as_wong_et_al_on_mnist() -> None:
    """``clip_start=False``: the first gradient is taken at x + δ₀ itself (pixels below 0 on a
    black background), the same draw the clipped start projects into [0, 1]; the returned
    example is inside the ε-ball and the image box either way."""
    x = torch.zeros(6, 1, 4, 4)
    x[:, :, 1:3, 1:3] = 1.0
    unclipped = FGSMRandomStart(eps=0.3, seed=3, clip_start=False)
    clipped = FGSMRandomStart(eps=0.3, seed=3)
    start, clipped_start = unclipped.initial_point(x), clipped.initial_point(x)
    assert (start < 0).any() and (start > 1).any()
    assert torch.equal(start.clamp(0.0, 1.0), clipped_start)
    assert (start - x).abs().max() <= 0.3 + 1e-6

    # A model whose loss gradient is -1 below x = -0.05 and +1 above (|x + 0.05| summed): the
    # unclipped start steps those background pixels down (then projects them to 0), the clipped
    # one, at 0, steps them up to ε.
    class AbsSum(nn.Module):
        def forward(self, inputs: Tensor) -> Tensor:
            score = (inputs + 0.05).abs().flatten(1).sum(1, keepdim=True)
            return torch.cat([-score, score], dim=1)

    y = torch.zeros(6, dtype=torch.long)
    out_unclipped, out_clipped = unclipped(AbsSum(), x, y), clipped(AbsSum(), x, y)
    for out in (out_unclipped, out_clipped):
        assert out.min() >= 0 and out.max() <= 1 and (out - x).abs().max() <= 0.3 + 1e-6
    negative = (start < -0.05) & (x == 0)
    assert negative.any()
    assert torch.all(out_unclipped[negative] == 0.0)
    assert torch.allclose(out_clipped[negative], torch.full_like(out_clipped[negative], 0.3))
    with pytest.raises(ValueError, match="clip_start"):
        FGSMRandomStart(eps=0.3, clip_start="no")  # type: ignore[arg-type]
