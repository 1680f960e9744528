"""Softplus(β) during training and/or evaluation (Dombrowski et al. 2019) in RobustClassifier."""

from __future__ import annotations

import pytest
import torch
from pytorch_lightning import Trainer
from torch import nn

from common.activations import count_relus
from datamodules import SyntheticShapes
from lightning_modules import RobustClassifier
from losses import ERM


def classifier(**kwargs) -> RobustClassifier:
    return RobustClassifier(
        num_classes=2, input_shape=(1, 16, 16), backbone_kwargs={"width": 4, "hidden": 8}, eval_attack=None, **kwargs
    )


def softplus_betas(model: nn.Module) -> list[float]:
    return [m.beta for m in model.modules() if isinstance(m, nn.Softplus)]


@pytest.mark.parametrize(
    ("activation", "eval_activation", "stored_relus", "train_softplus", "eval_softplus"),
    [
        ("relu", None, True, False, False),
        ("softplus", None, False, True, True),
        ("relu", "softplus", True, False, True),
        ("softplus", "relu", True, True, False),
    ],
)
def test_each_phase_sees_its_activation(
    activation, eval_activation, stored_relus, train_softplus, eval_softplus
) -> None:
    module = classifier(activation=activation, eval_activation=eval_activation, softplus_beta=7.0)
    assert (count_relus(module.model) > 0) == stored_relus
    for phase, softplus in (("train", train_softplus), ("eval", eval_softplus)):
        with module._activation(phase):
            assert (count_relus(module.model) == 0) == softplus
            assert all(beta == 7.0 for beta in softplus_betas(module.model))
    assert (count_relus(module.model) > 0) == stored_relus  # restored after each phase


def test_relu_network_evaluated_with_softplus_gives_softplus_logits() -> None:
    module = classifier(activation="relu", eval_activation="softplus", softplus_beta=5.0).eval()
    x = torch.rand(4, 1, 16, 16)
    relu_logits = module.model(x)
    with module._activation("eval"):
        smooth_logits = module.model(x)
    assert not torch.allclose(relu_logits, smooth_logits)
    torch.testing.assert_close(module.model(x), relu_logits)


class RecordsActivation(ERM):
    def __init__(self) -> None:
        super().__init__()
        self.relus_seen: list[int] = []

    def forward(self, model, x, y, context=None):  # type: ignore[override]
        self.relus_seen.append(count_relus(model))
        return super().forward(model, x, y, context)


def test_training_step_runs_with_softplus_when_only_training_asks_for_it(tmp_path) -> None:
    objective = RecordsActivation()
    module = classifier(activation="softplus", eval_activation="relu", objective=objective)
    data = SyntheticShapes(image_size=16, num_classes=2, train_size=16, val_size=8, test_size=8, batch_size=8)
    Trainer(
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    ).fit(module, data)
    assert objective.relus_seen == [0, 0]
    assert count_relus(module.model) > 0


@pytest.mark.parametrize(
    ("kwargs", "field"), [({"softplus_beta": 0.0}, "softplus_beta"), ({"eval_activation": "tanh"}, "eval_activation")]
)
def test_bad_softplus_options_name_the_field(kwargs, field) -> None:
    with pytest.raises(ValueError, match=f"^{field} must be"):
        classifier(**kwargs)
