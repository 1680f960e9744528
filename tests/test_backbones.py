"""Backbones: shapes, normalisation inside the model, softplus swap, name validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from common.activations import count_relus, softplus_relus
from lightning_modules import build_backbone, build_model


@pytest.mark.parametrize(
    "name, shape, kwargs",
    [
        ("small_cnn", (1, 28, 28), {"width": 4, "hidden": 8}),
        ("small_cnn", (3, 32, 32), {"width": 4, "hidden": 8, "batch_norm": True}),
        ("preact_resnet18", (3, 32, 32), {"width": 4}),
        ("torchvision/resnet18", (1, 28, 28), {}),
    ],
)
def test_backbones_give_one_logit_per_class(name: str, shape: tuple[int, int, int], kwargs: dict) -> None:
    net = build_backbone(name, 7, shape, **kwargs)
    assert net(torch.rand(2, *shape)).shape == (2, 7)


def test_normalisation_is_the_first_layer() -> None:
    model = build_model("small_cnn", 3, (3, 16, 16), (0.1, 0.2, 0.3), (0.5, 0.25, 0.2), backbone_kwargs={"width": 4})
    x = torch.rand(4, 3, 16, 16)
    mean = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.5, 0.25, 0.2]).view(1, 3, 1, 1)
    torch.testing.assert_close(model(x), model.net((x - mean) / std))
    assert list(model.state_dict())[:2] == ["normalize.mean", "normalize.std"]


def test_softplus_activation_replaces_every_relu() -> None:
    relu_net = build_backbone("preact_resnet18", 3, (3, 32, 32), width=4)
    soft_net = build_backbone("preact_resnet18", 3, (3, 32, 32), activation="softplus", softplus_beta=5.0, width=4)
    assert count_relus(relu_net) > 0 and count_relus(soft_net) == 0
    assert all(m.beta == 5.0 for m in soft_net.modules() if isinstance(m, nn.Softplus))


def test_softplus_context_swaps_and_restores() -> None:
    net = build_backbone("small_cnn", 3, (1, 16, 16), width=4, hidden=8)
    x = torch.rand(2, 1, 16, 16)
    before, n_relus = net(x), count_relus(net)
    with softplus_relus(net, beta=1e4):
        assert count_relus(net) == 0
        torch.testing.assert_close(net(x), before, atol=1e-3, rtol=1e-3)  # β → ∞ is ReLU
    assert count_relus(net) == n_relus
    torch.testing.assert_close(net(x), before)


@pytest.mark.parametrize("name", ["resnet", "torchvision/not_a_model"])
def test_unknown_backbone_names_the_allowed_values(name: str) -> None:
    with pytest.raises(ValueError, match="small_cnn|list_models"):
        build_backbone(name, 3, (1, 28, 28))


# Class backbones: any nn.Module by class path, the data's values in the arguments it declares.


class RecordingNet(nn.Module):
    """Records the arguments it was built with; declares three of the linked names."""

    received: dict = {}

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: tuple = (32, 32), hidden: int = 4) -> None:
        super().__init__()
        RecordingNet.received = {"num_classes": num_classes, "in_channels": in_channels, "image_size": image_size}
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 2, 3, padding=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(2 * image_size[0] * image_size[1], hidden), nn.ReLU(), nn.Linear(hidden, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ClassesOnly(nn.Module):
    """Declares none of the linked names but ``num_classes``; uses F.relu (nothing to swap)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.LazyLinear(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.nn.functional.relu(x.flatten(1)))


class WrongWidth(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.LazyLinear(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


CALLED: list[str] = []


def not_a_module(*args: object, **kwargs: object) -> None:
    CALLED.append("called")


HERE = __name__


def test_class_backbone_gets_the_data_values_it_declares() -> None:
    spec = {"class_path": f"{HERE}.RecordingNet", "init_args": {"hidden": 5, "in_channels": 7}}
    net = build_backbone(spec, 6, (3, 16, 12))
    assert RecordingNet.received == {"num_classes": 6, "in_channels": 3, "image_size": [16, 12]}  # 7 replaced
    assert net(torch.rand(2, 3, 16, 12)).shape == (2, 6)
    assert net.body[3].out_features == 5 and net.body[5].in_features == 5
    # The same class given as a class, as a partial and by its dotted path alone.
    import functools

    for form in (RecordingNet, functools.partial(RecordingNet, hidden=5), f"{HERE}.RecordingNet"):
        assert build_backbone(form, 6, (1, 8, 8))(torch.rand(2, 1, 8, 8)).shape == (2, 6)


def test_class_backbone_without_linked_names_is_built_from_init_args_only() -> None:
    net = build_backbone(ClassesOnly, 4, (1, 5, 5))
    assert net(torch.rand(2, 1, 5, 5)).shape == (2, 4)


@pytest.mark.parametrize(
    "spec, kwargs, match",
    [
        ({"class_path": f"{HERE}.RecordingNet", "init_args": {"hiden": 5}}, {}, r"backbone.init_args.*hiden"),
        ({"class_path": f"{HERE}.WrongWidth"}, {}, r"must return \(N, num_classes\) = \(2, 6\).*\(2, 3\)"),
        ({"class_path": "no_such_package_here.Net"}, {}, "cannot be imported.*PYTHONPATH"),
        ({"class_path": f"{HERE}.NoSuchClass"}, {}, "has no 'NoSuchClass'"),
        ({"class_path": f"{HERE}.RecordingNet"}, {"width": 3}, "backbone_kwargs.*init_args"),
        ({"class_path": f"{HERE}.RecordingNet", "init_arg": {}}, {}, "class_path.*init_args"),
        ("torch.nn.Identity", {}, "must return"),
    ],
)
def test_bad_class_backbones_name_the_field(spec: object, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_backbone(spec, 6, (1, 8, 8), **kwargs)


def test_a_class_path_that_is_no_module_class_is_never_called() -> None:
    with pytest.raises(ValueError, match="not an nn.Module subclass"):
        build_backbone(f"{HERE}.not_a_module", 6, (1, 8, 8))
    with pytest.raises(ValueError, match="not an nn.Module subclass"):
        build_backbone({"class_path": "os.system", "init_args": {}}, 6, (1, 8, 8))
    assert CALLED == []


def test_softplus_needs_relu_modules() -> None:
    with pytest.raises(ValueError, match="activation: softplus.*F.relu"):
        build_backbone(ClassesOnly, 4, (1, 5, 5), activation="softplus")
    net = build_backbone(RecordingNet, 4, (1, 5, 5), activation="softplus", softplus_beta=3.0)
    assert count_relus(net) == 0 and any(isinstance(m, nn.Softplus) for m in net.modules())


def test_classifier_records_a_class_backbone_as_plain_data() -> None:
    from lightning_modules import RobustClassifier

    module = RobustClassifier(backbone=RecordingNet, num_classes=3, input_shape=(1, 8, 8), eval_attack=None)
    # num_classes, required and first, is left to the call (the parser refuses it in init_args).
    assert module.hparams["backbone"] == {
        "class_path": f"{HERE}.RecordingNet",
        "init_args": {"in_channels": 1, "image_size": [8, 8]},
    }
    rebuilt = build_model(module.hparams["backbone"], 3, (1, 8, 8), (0.5,), (0.25,))
    rebuilt.load_state_dict(module.model.state_dict())  # the recorded spec rebuilds the same layers
    with pytest.raises(ValueError, match="eval_activation: softplus"):
        RobustClassifier(backbone=ClassesOnly, num_classes=3, input_shape=(1, 8, 8), eval_activation="softplus")
