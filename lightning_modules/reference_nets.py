"""The MNIST networks of published robust-training papers, rebuilt from their descriptions.

Each class builds the layer list of one paper's network (checked against the authors' code) so
that a recipe can reproduce that paper's protocol on the same architecture. All take
``in_channels × H × W`` inputs and size their first linear layer from ``image_size``; the
published layer sizes hold for 1×28×28 (MNIST, Fashion-MNIST). Activations are ``nn.ReLU``
modules, one per use, so that softplus(β) can replace them and hooks can find them.

``init: "reference"`` (the default) initialises the weights as the authors' code does;
``init: "pytorch"`` keeps PyTorch's defaults. The networks take whatever the model's
normalisation layer gives them: the authors of the first three fed raw [0, 1] pixels (the
recipes turn the datamodule's normalisation off for them, ``normalize: false``); Ismail et al.
normalised with MNIST's mean and standard deviation (the datamodule's default).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

from torch import Tensor, nn

Init = Literal["reference", "pytorch"]
INITS: tuple[str, ...] = ("reference", "pytorch")


def _check_init(init: str) -> None:
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")


def _conv(n: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output side of a convolution (or floor-mode pooling) on a side of ``n`` pixels."""
    return (n + 2 * padding - kernel) // stride + 1


def _ceil_half(n: int) -> int:
    """Output side of a 2×2 max-pool with TensorFlow's "SAME" padding: ⌈n / 2⌉."""
    return -(-n // 2)


def _check_size(name: str, size: int, minimum: int) -> None:
    if size < minimum:
        raise ValueError(f"image_size: {name} needs images of at least {minimum}×{minimum} pixels, got side {size}")


class Wong2020MNIST(nn.Module):
    """The MNIST network of Wong, Rice & Kolter, "Fast is better than free: Revisiting
    adversarial training", ICLR 2020 (``mnist_net`` in github.com/locuslab/fast_adversarial,
    ``MNIST/mnist_net.py``).

    Layers (1×28×28 input; 166 406 parameters)::

        Conv2d(1, 16, 4, stride=2, padding=1)   → 16×14×14, ReLU
        Conv2d(16, 32, 4, stride=2, padding=1)  → 32×7×7, ReLU
        Flatten → Linear(32·7·7, 100), ReLU
        Linear(100, 10)

    The authors keep PyTorch's default initialisation; ``init`` has nothing to change.

    Args:
        in_channels: image channels (1 in the paper).
        num_classes: outputs (10).
        image_size: (H, W) of the input, to size the first linear layer.
        hidden: units of the hidden linear layer (100).
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, image_size: tuple[int, int] = (28, 28), hidden: int = 100
    ) -> None:
        super().__init__()
        h, w = image_size
        _check_size(type(self).__name__, min(h, w), 4)
        h, w = (_conv(_conv(n, 4, 2, 1), 4, 2, 1) for n in (h, w))
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(in_channels, 16, 4, stride=2, padding=1),
                relu1=nn.ReLU(),
                conv2=nn.Conv2d(16, 32, 4, stride=2, padding=1),
                relu2=nn.ReLU(),
            )
        )
        self.classifier = nn.Sequential(
            OrderedDict(
                flatten=nn.Flatten(),
                fc1=nn.Linear(32 * h * w, hidden),
                relu3=nn.ReLU(),
                fc2=nn.Linear(hidden, num_classes),
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class Madry2018MNIST(nn.Module):
    """The MNIST network of Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning
    Models Resistant to Adversarial Attacks", ICLR 2018 (github.com/MadryLab/mnist_challenge,
    ``model.py``, after TensorFlow's MNIST tutorial). Chen et al., "Robust Attribution
    Regularization", NeurIPS 2019, use the same network for MNIST and Fashion-MNIST.

    Layers (1×28×28 input; 3 274 634 parameters)::

        Conv2d(1, 32, 5, padding=2) ("same")    → 32×28×28, ReLU, MaxPool2d(2) → 32×14×14
        Conv2d(32, 64, 5, padding=2) ("same")   → 64×14×14, ReLU, MaxPool2d(2) → 64×7×7
        Flatten → Linear(64·7·7, 1024), ReLU
        Linear(1024, 10)

    ``init: "reference"``: every weight from a normal of standard deviation 0.1 truncated at
    two standard deviations (``tf.truncated_normal(stddev=0.1)``), every bias 0.1. Pooling
    rounds odd sizes up, like TensorFlow's "SAME" pooling (no difference at 28×28). The
    authors flatten in height-width-channel order; the order does not matter when training
    from scratch.

    Args:
        in_channels: image channels (1 in the paper).
        num_classes: outputs (10).
        image_size: (H, W) of the input, to size the first linear layer.
        hidden: units of the hidden linear layer (1024).
        init: "reference" (the authors') or "pytorch" (PyTorch's defaults).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: tuple[int, int] = (28, 28),
        hidden: int = 1024,
        init: Init = "reference",
    ) -> None:
        super().__init__()
        _check_init(init)
        h, w = image_size
        _check_size(type(self).__name__, min(h, w), 1)
        h, w = (_ceil_half(_ceil_half(n)) for n in (h, w))
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(in_channels, 32, 5, padding=2),
                relu1=nn.ReLU(),
                pool1=nn.MaxPool2d(2, ceil_mode=True),
                conv2=nn.Conv2d(32, 64, 5, padding=2),
                relu2=nn.ReLU(),
                pool2=nn.MaxPool2d(2, ceil_mode=True),
            )
        )
        self.classifier = nn.Sequential(
            OrderedDict(
                flatten=nn.Flatten(),
                fc1=nn.Linear(64 * h * w, hidden),
                relu3=nn.ReLU(),
                fc2=nn.Linear(hidden, num_classes),
            )
        )
        if init == "reference":
            for module in self.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    nn.init.trunc_normal_(module.weight, std=0.1, a=-0.2, b=0.2)
                    nn.init.constant_(module.bias, 0.1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class Zhang2019MNIST(nn.Module):
    """The MNIST network of TRADES: Zhang, Yu, Jiao, Xing, El Ghaoui & Jordan, "Theoretically
    Principled Trade-off between Robustness and Accuracy", ICML 2019 (``SmallCNN`` in
    github.com/yaodongyu/TRADES, ``models/small_cnn.py``): four convolutions and three linear
    layers.

    Layers (1×28×28 input; 312 202 parameters)::

        Conv2d(1, 32, 3)   → 32×26×26, ReLU
        Conv2d(32, 32, 3)  → 32×24×24, ReLU, MaxPool2d(2) → 32×12×12
        Conv2d(32, 64, 3)  → 64×10×10, ReLU
        Conv2d(64, 64, 3)  → 64×8×8,   ReLU, MaxPool2d(2) → 64×4×4
        Flatten → Linear(64·4·4, 200), ReLU, Dropout(0.5)
        Linear(200, 200), ReLU
        Linear(200, 10)

    ``init: "reference"``: convolutions He-normal (``kaiming_normal_``, fan-in, ReLU gain) with
    zero biases, the last linear layer all zeros, the other linear layers PyTorch's default.
    Dropout is active in train mode only; TRADES' inner maximisation runs in eval mode.

    Args:
        in_channels: image channels (1 in the paper).
        num_classes: outputs (10).
        image_size: (H, W) of the input, to size the first linear layer.
        dropout: dropout probability after the first linear layer (0.5).
        init: "reference" (the authors') or "pytorch" (PyTorch's defaults).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: tuple[int, int] = (28, 28),
        dropout: float = 0.5,
        init: Init = "reference",
    ) -> None:
        super().__init__()
        _check_init(init)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        h, w = image_size
        _check_size(type(self).__name__, min(h, w), 16)
        h, w = (_conv(_conv(_conv(_conv(_conv(_conv(n, 3), 3), 2, 2), 3), 3), 2, 2) for n in (h, w))
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(in_channels, 32, 3),
                relu1=nn.ReLU(),
                conv2=nn.Conv2d(32, 32, 3),
                relu2=nn.ReLU(),
                maxpool1=nn.MaxPool2d(2, 2),
                conv3=nn.Conv2d(32, 64, 3),
                relu3=nn.ReLU(),
                conv4=nn.Conv2d(64, 64, 3),
                relu4=nn.ReLU(),
                maxpool2=nn.MaxPool2d(2, 2),
            )
        )
        self.classifier = nn.Sequential(
            OrderedDict(
                flatten=nn.Flatten(),
                fc1=nn.Linear(64 * h * w, 200),
                relu1=nn.ReLU(),
                drop=nn.Dropout(dropout),
                fc2=nn.Linear(200, 200),
                relu2=nn.ReLU(),
                fc3=nn.Linear(200, num_classes),
            )
        )
        if init == "reference":
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight)
                    nn.init.zeros_(module.bias)
            nn.init.zeros_(self.classifier.fc3.weight)
            nn.init.zeros_(self.classifier.fc3.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class Ismail2021MNIST(nn.Module):
    """The MNIST network of saliency-guided training: Ismail, Corrada Bravo & Feizi, "Improving
    Deep Learning Interpretability by Saliency Guided Training", NeurIPS 2021 (``Net`` in
    github.com/ayaabdelsalam91/saliency_guided_training, ``Scripts/cnn.py``; PyTorch's MNIST
    example network).

    Layers (1×28×28 input; 1 199 882 parameters)::

        Conv2d(1, 32, 3)   → 32×26×26, ReLU
        Conv2d(32, 64, 3)  → 64×24×24, ReLU, MaxPool2d(2) → 64×12×12, Dropout(0.25)
        Flatten → Linear(64·12·12, 128), ReLU, Dropout(0.5)
        Linear(128, 10), LogSoftmax

    The output is log-probabilities, as in the authors' code: softmax, cross-entropy and the
    KL term are unchanged by it (log-softmax only shifts each example's logits by a constant),
    but the saliency ∇ₓ f_y(x) that selects the features to mask is then the gradient of
    log p_y, the authors' choice. The authors keep PyTorch's default initialisation.

    Args:
        in_channels: image channels (1 in the paper).
        num_classes: outputs (10).
        image_size: (H, W) of the input, to size the first linear layer.
        log_softmax: end with ``LogSoftmax`` (the authors' network) or with the raw logits.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: tuple[int, int] = (28, 28),
        log_softmax: bool = True,
    ) -> None:
        super().__init__()
        h, w = image_size
        _check_size(type(self).__name__, min(h, w), 6)
        h, w = (_conv(_conv(_conv(n, 3), 3), 2, 2) for n in (h, w))
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(in_channels, 32, 3, 1),
                relu1=nn.ReLU(),
                conv2=nn.Conv2d(32, 64, 3, 1),
                relu2=nn.ReLU(),
                pool=nn.MaxPool2d(2),
                dropout1=nn.Dropout(0.25),
            )
        )
        head: OrderedDict[str, nn.Module] = OrderedDict(
            flatten=nn.Flatten(),
            fc1=nn.Linear(64 * h * w, 128),
            relu3=nn.ReLU(),
            dropout2=nn.Dropout(0.5),
            fc2=nn.Linear(128, num_classes),
        )
        if log_softmax:
            head["log_softmax"] = nn.LogSoftmax(dim=1)
        self.classifier = nn.Sequential(head)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


