"""The published MNIST networks: parameter counts from their layer lists, activation shapes,
dropout, the authors' initialisation, and their registration as built-in backbones."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightning_modules import BUILTIN_BACKBONES, build_backbone, import_backbone_class
from lightning_modules.reference_nets import Ismail2021MNIST, Madry2018MNIST, Wong2020MNIST, Zhang2019MNIST


def conv(c_in: int, c_out: int, k: int) -> int:
    """Weights and biases of a k×k convolution."""
    return c_in * c_out * k * k + c_out


def linear(n_in: int, n_out: int) -> int:
    """Weights and biases of a linear layer."""
    return n_in * n_out + n_out


# Counted from the papers' layer lists (docstrings of lightning_modules.reference_nets), never
# from a model: a wrong kernel, stride, padding or width changes the count or the shapes below.
# They come to 166 406 (Wong et al.), 3 274 634 (Madry et al., "3.3 M"), 312 202 (TRADES'
# SmallCNN) and 1 199 882 (PyTorch's MNIST example, Ismail et al.).
HAND_COUNTS = {
    # conv 1→16 4×4 s2 p1 (28→14), conv 16→32 4×4 s2 p1 (14→7), fc 32·7·7→100, fc 100→10
    "wong2020_mnist": conv(1, 16, 4) + conv(16, 32, 4) + linear(32 * 7 * 7, 100) + linear(100, 10),
    # conv 1→32 5×5 same, pool (→14), conv 32→64 5×5 same, pool (→7), fc 64·7·7→1024, fc 1024→10
    "madry2018_mnist": conv(1, 32, 5) + conv(32, 64, 5) + linear(64 * 7 * 7, 1024) + linear(1024, 10),
    # conv 1→32, 32→32 (3×3 valid: 28→26→24), pool (12), conv 32→64, 64→64 (10→8), pool (4),
    # fc 64·4·4→200, fc 200→200, fc 200→10
    "zhang2019_mnist": conv(1, 32, 3) + conv(32, 32, 3) + conv(32, 64, 3) + conv(64, 64, 3)
    + linear(64 * 4 * 4, 200) + linear(200, 200) + linear(200, 10),
    # conv 1→32, 32→64 (3×3 valid: 28→26→24), pool (12), fc 64·12·12→128, fc 128→10
    "ismail2021_mnist": conv(1, 32, 3) + conv(32, 64, 3) + linear(64 * 12 * 12, 128) + linear(128, 10),
}
# Activation shapes after each convolution / pooling, for one 1×28×28 image.
SHAPES = {
    "wong2020_mnist": {"features.conv1": (16, 14, 14), "features.conv2": (32, 7, 7)},
    "madry2018_mnist": {
        "features.conv1": (32, 28, 28), "features.pool1": (32, 14, 14),
        "features.conv2": (64, 14, 14), "features.pool2": (64, 7, 7),
    },
    "zhang2019_mnist": {
        "features.conv1": (32, 26, 26), "features.conv2": (32, 24, 24), "features.maxpool1": (32, 12, 12),
        "features.conv3": (64, 10, 10), "features.conv4": (64, 8, 8), "features.maxpool2": (64, 4, 4),
    },
    "ismail2021_mnist": {"features.conv1": (32, 26, 26), "features.conv2": (64, 24, 24), "features.pool": (64, 12, 12)},
}  # fmt: skip
FAST_INIT = {"madry2018_mnist": {"init": "pytorch"}}  # the truncated normal of 3.2 M weights takes a second


@pytest.mark.parametrize("name", list(HAND_COUNTS))
def test_parameter_count_is_the_papers(name: str) -> None:
    net = build_backbone(name, 10, (1, 28, 28), **FAST_INIT.get(name, {}))
    assert sum(p.numel() for p in net.parameters()) == HAND_COUNTS[name]


@pytest.mark.parametrize("name", list(SHAPES))
def test_activation_shapes_follow_the_layer_list(name: str) -> None:
    net = build_backbone(name, 10, (1, 28, 28), **FAST_INIT.get(name, {})).eval()
    seen: dict[str, tuple[int, ...]] = {}
    modules = dict(net.named_modules())
    for key in SHAPES[name]:
        modules[key].register_forward_hook(lambda m, i, o, key=key: seen.__setitem__(key, tuple(o.shape[1:])))
    assert net(torch.rand(1, 1, 28, 28)).shape == (1, 10)
    assert seen == SHAPES[name]


def test_dropout_where_the_authors_put_it() -> None:
    def rates(net: nn.Module) -> list[float]:
        return [m.p for m in net.modules() if isinstance(m, nn.Dropout)]

    assert rates(Zhang2019MNIST()) == [0.5]
    assert rates(Ismail2021MNIST()) == [0.25, 0.5]
    assert rates(Wong2020MNIST()) == [] and rates(Madry2018MNIST(init="pytorch")) == []
    net, x = Zhang2019MNIST(init="pytorch"), torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(net.eval()(x), net(x))  # deterministic in eval mode
    assert not torch.equal(net.train()(x), net(x))  # dropout in train mode


def test_madry_initialisation_is_tensorflows_truncated_normal() -> None:
    torch.manual_seed(0)
    net = Madry2018MNIST()
    weights = net.classifier.fc1.weight  # 3.2 M draws
    assert weights.abs().max() <= 0.2  # truncated at two standard deviations
    # A normal of std 0.1 truncated at ±2σ has std 0.1·sqrt(1 − 2·2φ(2)/(2Φ(2) − 1)) ≈ 0.0880.
    phi = math.exp(-2) / math.sqrt(2 * math.pi)
    big_phi = 0.5 * (1 + math.erf(2 / math.sqrt(2)))
    expected = 0.1 * math.sqrt(1 - 4 * phi / (2 * big_phi - 1))
    assert float(weights.detach().std()) == pytest.approx(expected, rel=2e-3)
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            assert torch.all(module.bias == 0.1)


def test_trades_initialisation() -> None:
    torch.manual_seed(0)
    net = Zhang2019MNIST()
    fc3 = net.classifier.fc3
    assert torch.all(fc3.weight == 0) and torch.all(fc3.bias == 0)
    conv4 = net.features.conv4  # He normal: std sqrt(2 / fan_in), fan_in = 64·3·3
    assert float(conv4.weight.detach().std()) == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.03)
    assert torch.all(conv4.bias == 0)
    # With the final layer at zero every class starts equally likely, as in the authors' code.
    torch.testing.assert_close(net.eval()(torch.rand(3, 1, 28, 28)), torch.zeros(3, 10))


def test_ismail_network_outputs_log_probabilities() -> None:
    out = Ismail2021MNIST().eval()(torch.rand(5, 1, 28, 28))
    torch.testing.assert_close(out.logsumexp(1), torch.zeros(5), atol=1e-5, rtol=0)
    logits = Ismail2021MNIST(log_softmax=False).eval()(torch.rand(5, 1, 28, 28))
    assert not torch.allclose(logits.logsumexp(1), torch.zeros(5))


@pytest.mark.parametrize("name", ["wong2020_mnist", "madry2018_mnist", "zhang2019_mnist", "ismail2021_mnist"])
def test_other_input_sizes_and_channels(name: str) -> None:
    net = build_backbone(name, 7, (3, 33, 31), **FAST_INIT.get(name, {}))
    assert net(torch.rand(2, 3, 33, 31)).shape == (2, 7)


def test_every_builtin_name_is_an_importable_module_class() -> None:
    for name, class_path in BUILTIN_BACKBONES.items():
        assert issubclass(import_backbone_class(class_path), nn.Module), name


def test_bad_reference_arguments_name_the_field() -> None:
    with pytest.raises(ValueError, match="init must be one of"):
        Madry2018MNIST(init="xavier")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dropout"):
        Zhang2019MNIST(dropout=1.0)
    with pytest.raises(ValueError, match="image_size"):
        build_backbone("zhang2019_mnist", 10, (1, 12, 12))
