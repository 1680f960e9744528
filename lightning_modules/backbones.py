"""Backbone architectures and the normalisation layer that makes them take [0, 1] inputs.

A backbone is chosen by a *spec*, plain data that recipes, checkpoints and export bundles
store:

- a built-in name (:data:`BUILTIN_BACKBONES`):

  - ``small_cnn``: four 3×3 convolutions and two max-pools, then a hidden linear layer; for
    28×28 and 32×32 inputs (the quickstart model).
  - ``preact_resnet18``: PreAct ResNet-18 (He et al., ECCV 2016), the standard model of
    adversarial training on CIFAR-10 (Rice, Wong & Kolter, ICML 2020).
  - ``wong2020_mnist``, ``madry2018_mnist``, ``zhang2019_mnist`` (TRADES' SmallCNN),
    ``ismail2021_mnist``: the MNIST networks of published robust-training papers
    (:mod:`lightning_modules.reference_nets`).

  - ``wrn28_10``, ``wrn34_10``: WideResNet-28-10 and -34-10 (:mod:`lightning_modules.wide_resnet`).

- ``torchvision/<name>``: any torchvision classification model, untrained, with
  ``num_classes`` outputs; single-channel inputs are repeated to three channels.
- any ``nn.Module`` class, by ``{"class_path": "package.module.Class", "init_args": {...}}``
  (in YAML the usual ``class_path``/``init_args`` node), or by its dotted path alone.
- ``timm/<name>``: any timm model, with the optional dependency
  (:mod:`lightning_modules.timm_backbones`).

Every class is built the same way (:func:`build_backbone`): the arguments it declares under the
names ``num_classes``, ``in_channels``, ``input_shape`` (C, H, W) and ``image_size`` (H, W)
are set from the data (a value given for them in ``init_args`` is replaced), the others come
from ``init_args`` (or ``backbone_kwargs`` for a built-in name). The result must map a batch of
(C, H, W) images to (batch, num_classes) logits; this is checked on a zero batch when the
backbone is built, so that a mismatch stops the run before training.

Registering a new built-in is one line in :data:`BUILTIN_BACKBONES`: its name and its class
path, imported only when used.

Loading a checkpoint or a bundle of a ``class_path`` backbone imports that class (the weights
file itself never holds code); only ``nn.Module`` subclasses are accepted. The exported
``model.pt2`` program loads without it.

Activations should be ``nn.ReLU`` modules (never ``F.relu``), so that softplus(β) can replace
them (:mod:`common.activations`); ``activation: softplus`` refuses a backbone without any.

Every backbone names the layer Grad-CAM explains by default in a ``gradcam_layer`` attribute (a
module name relative to the backbone; :class:`attributions.GradCAM` looks for it): the rectified
feature maps of the last convolutional stage, as Selvaraju et al. (ICCV 2017) use them —
``small_cnn``: the ReLU after the last convolution (before the pool); ``preact_resnet18``:
``relu``, the output of the last block after the final BN-ReLU (global average pooling and one
linear layer follow, so Grad-CAM there is CAM); torchvision models: see
:func:`torchvision_gradcam_layer`.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from common.activations import count_relus, relu_to_softplus
from lightning_modules.timm_backbones import TIMM_PREFIX, TimmBackbone, check_timm_name

Activation = Literal["relu", "softplus"]
BackboneSpec = str | dict[str, Any]
"""A built-in name, ``torchvision/<name>``, a dotted class path, or ``{"class_path", "init_args"}``."""

BUILTIN_BACKBONES: dict[str, str] = {
    "small_cnn": "lightning_modules.backbones.SmallCNN",
    "preact_resnet18": "lightning_modules.backbones.PreActResNet18",
    "wong2020_mnist": "lightning_modules.reference_nets.Wong2020MNIST",
    "madry2018_mnist": "lightning_modules.reference_nets.Madry2018MNIST",
    "zhang2019_mnist": "lightning_modules.reference_nets.Zhang2019MNIST",
    "ismail2021_mnist": "lightning_modules.reference_nets.Ismail2021MNIST",
    "wrn28_10": "lightning_modules.wide_resnet.WideResNet28x10",
    "wrn34_10": "lightning_modules.wide_resnet.WideResNet34x10",
}
"""Built-in backbones: name → class path. One line registers a new one."""

TORCHVISION_PREFIX = "torchvision/"
LINKED_ARGUMENTS: tuple[str, ...] = ("num_classes", "in_channels", "input_shape", "image_size")
"""Constructor arguments a backbone class may declare to receive from the data."""


class Normalize(nn.Module):
    """``(x − mean) / std`` per channel: the first layer of every robustlens model.

    Keeping normalisation inside the model keeps attacks, attributions and metrics in [0, 1]
    pixel space, and makes an exported model take raw images.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std must have the same length, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be > 0 in every channel, got {list(std)}")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class SmallCNN(nn.Module):
    """conv-conv-pool-conv-conv-pool-linear-linear, all 3×3 convolutions with padding 1.

    Args:
        in_channels: image channels.
        num_classes: outputs.
        image_size: (H, W) of the input, to size the first linear layer.
        width: channels of the first two convolutions (the last two have 2×).
        hidden: units of the hidden linear layer.
        batch_norm: BatchNorm after every convolution.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        width: int = 32,
        hidden: int = 256,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()

        def conv(cin: int, cout: int) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU())
            return layers

        self.features = nn.Sequential(
            *conv(in_channels, width),
            *conv(width, width),
            nn.MaxPool2d(2),
            *conv(width, 2 * width),
            *conv(2 * width, 2 * width),
            nn.MaxPool2d(2),
        )
        h, w = image_size[0] // 4, image_size[1] // 4
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * h * w, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )
        last_relu = max(i for i, m in enumerate(self.features) if isinstance(m, nn.ReLU))
        #: Grad-CAM's layer: the rectified maps of the last convolution, before the pool
        self.gradcam_layer = f"features.{last_relu}"

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class PreActBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv-BN-ReLU-conv plus a shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.relu2(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """PreAct ResNet-18 (He, Zhang, Ren & Sun, "Identity Mappings in Deep Residual Networks")."""

    #: Grad-CAM's layer: the last block's output after the final BN-ReLU, which only global
    #: average pooling and the linear layer follow
    gradcam_layer = "relu"

    def __init__(self, in_channels: int, num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        layers: list[nn.Module] = []
        in_planes = width
        for i, stride in enumerate((1, 2, 2, 2)):
            planes = width * 2**i
            layers.append(nn.Sequential(PreActBlock(in_planes, planes, stride), PreActBlock(planes, planes, 1)))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.bn = nn.BatchNorm2d(in_planes)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = self.pool(self.relu(self.bn(out)))
        return self.linear(out.flatten(1))


class ChannelRepeat(nn.Module):
    """Repeat a single-channel image to ``channels`` channels (grey images into RGB models)."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor:
        return x.expand(-1, self.channels, -1, -1)


def torchvision_gradcam_layer(name: str, net: nn.Module) -> str | None:
    """Grad-CAM's layer of torchvision model ``name``: the output of its last convolutional stage.

    ResNet, ResNeXt, Wide ResNet: ``layer4`` (the last block ends with its ReLU); VGG, AlexNet:
    the last ReLU of ``features``; MobileNet, EfficientNet, SqueezeNet, DenseNet: ``features``
    (DenseNet's forward rectifies that output in place, so the captured maps are the rectified
    ones; MobileNetV3 and EfficientNet end with Hardswish and SiLU, their own nonlinearity);
    MNASNet: ``layers``; ShuffleNetV2: ``conv5``; RegNet: ``trunk_output``; GoogLeNet:
    ``inception5b``; Inception v3: ``Mixed_7c``; ConvNeXt: ``features`` (no rectifier in the
    architecture). None for transformers (ViT, Swin, MaxViT), whose features are not
    convolutional maps: Grad-CAM then needs an explicit ``layer``.
    """
    if name.startswith(("resnet", "resnext", "wide_resnet")):
        return "layer4"
    if name.startswith(("vgg", "alexnet")):
        features = net.get_submodule("features")
        return f"features.{max(i for i, m in enumerate(features) if isinstance(m, nn.ReLU))}"
    if name.startswith(("mobilenet", "efficientnet", "squeezenet", "densenet", "convnext")):
        return "features"
    named = {"googlenet": "inception5b", "inception_v3": "Mixed_7c"}
    if name in named:
        return named[name]
    prefixes = {"mnasnet": "layers", "shufflenet": "conv5", "regnet": "trunk_output"}
    return next((layer for prefix, layer in prefixes.items() if name.startswith(prefix)), None)


def available_backbones() -> list[str]:
    """Names :func:`build_backbone` accepts (torchvision models as ``torchvision/<name>``);
    any ``nn.Module`` class is accepted besides, by its class path."""
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    return list(BUILTIN_BACKBONES) + [TORCHVISION_PREFIX + n for n in names]


def _allowed() -> str:
    return (
        f"one of {', '.join(BUILTIN_BACKBONES)}, 'torchvision/<model name>', 'timm/<model name>', or an nn.Module class as "
        "'package.module.Class' or {class_path: package.module.Class, init_args: {...}}"
    )


def backbone_spec(backbone: Any) -> BackboneSpec:
    """``backbone`` as plain data: a name (str) or ``{"class_path": str, "init_args": dict}``.

    Accepts what :func:`build_backbone` accepts, and also an ``nn.Module`` class or a
    ``functools.partial`` of one with keyword arguments (Python callers).

    Raises:
        ValueError: naming the allowed forms, for anything else.
    """
    if isinstance(backbone, str):
        return backbone
    if isinstance(backbone, Mapping):
        unknown = sorted(set(backbone) - {"class_path", "init_args"})
        class_path = backbone.get("class_path")
        if unknown or not isinstance(class_path, str):
            raise ValueError(
                f"backbone: a class backbone is {{class_path: <str>, init_args: {{...}}}}, got keys {sorted(backbone)}"
            )
        init_args = backbone.get("init_args") or {}
        if not isinstance(init_args, Mapping):
            raise ValueError(f"backbone.init_args must be a mapping of argument names, got {init_args!r}")
        return {"class_path": class_path, "init_args": dict(init_args)}
    if isinstance(backbone, functools.partial) and isinstance(backbone.func, type) and not backbone.args:
        return {"class_path": _class_path(backbone.func), "init_args": dict(backbone.keywords)}
    if isinstance(backbone, type) and issubclass(backbone, nn.Module):
        return {"class_path": _class_path(backbone), "init_args": {}}
    raise ValueError(f"backbone must be {_allowed()}; got {backbone!r}")


def backbone_label(backbone: Any) -> str:
    """A short description of a backbone spec for titles and model cards."""
    spec = backbone_spec(backbone)
    if isinstance(spec, str):
        return spec
    args = ", ".join(f"{k}={v!r}" for k, v in spec["init_args"].items() if k not in LINKED_ARGUMENTS)
    return f"{spec['class_path']}({args})"


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_class_path(name: str) -> bool:
    return "." in name and not name.startswith(TORCHVISION_PREFIX)


def import_backbone_class(class_path: str) -> type[nn.Module]:
    """The ``nn.Module`` subclass named by ``package.module.Class``.

    Raises:
        ValueError: when it cannot be imported or is not an ``nn.Module`` subclass (nothing is
            called before that check).
    """
    module_name, _, qualname = class_path.rpartition(".")
    if not module_name:
        raise ValueError(f"backbone class_path {class_path!r} must be 'package.module.Class'")
    # The errors below are raised outside the except blocks, so that the message that names the
    # field is the one reported (train.py reports the innermost exception of a chain).
    target: Any = None
    problem = ""
    parts = class_path.split(".")
    for cut in range(len(parts) - 1, 0, -1):  # package.module.Class, then package.module.Outer.Inner, ...
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError as error:
            problem = problem or str(error)
            continue
        qualname = ".".join(parts[cut:])
        break
    if target is None:
        raise ValueError(
            f"backbone class_path {class_path!r} cannot be imported ({problem}); is its folder on PYTHONPATH?"
        )
    for attribute in qualname.split("."):
        if not hasattr(target, attribute):
            owner = getattr(target, "__name__", target)
            raise ValueError(f"backbone class_path {class_path!r}: {owner!r} has no {attribute!r}")
        target = getattr(target, attribute)
    if not (isinstance(target, type) and issubclass(target, nn.Module)):
        raise ValueError(f"backbone class_path {class_path!r} is not an nn.Module subclass (got {target!r})")
    return target


def check_backbone_name(name: str) -> None:
    """Raise a ValueError naming the allowed values when ``name`` is no known backbone name.

    A dotted class path is checked by importing it (:func:`import_backbone_class`).
    """
    if name in BUILTIN_BACKBONES:
        return
    if name.startswith(TIMM_PREFIX):
        return check_timm_name(name)
    if name.startswith(TORCHVISION_PREFIX):
        import torchvision

        tv_name = name[len(TORCHVISION_PREFIX) :]
        names = torchvision.models.list_models(module=torchvision.models)
        if tv_name in names:
            return
        raise ValueError(
            f"backbone {name!r}: torchvision has no classification model {tv_name!r}; "
            f"choose one of {', '.join(names[:8])}, ... (torchvision.models.list_models())"
        )
    if _is_class_path(name):
        import_backbone_class(name)
        return
    raise ValueError(f"backbone must be {_allowed()}; got {name!r}")


def linked_values(num_classes: int, input_shape: Sequence[int]) -> dict[str, Any]:
    """The values of :data:`LINKED_ARGUMENTS` for data of ``num_classes`` classes and (C, H, W) inputs."""
    c, h, w = (int(v) for v in input_shape)
    return {"num_classes": int(num_classes), "in_channels": c, "input_shape": [c, h, w], "image_size": [h, w]}


def constructor_arguments(
    cls: type[nn.Module], init_args: Mapping[str, Any], linked: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """``init_args`` with the linked values of the arguments ``cls`` declares, checked against
    its signature (errors name ``where``)."""
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # no introspectable signature: pass init_args only
        return dict(init_args)
    parameters = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    unknown = [k for k in init_args if k not in parameters and not takes_any]
    if unknown:
        accepted = [k for k, p in parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        raise ValueError(f"{where}: {cls.__name__} does not accept {unknown}; it accepts {accepted}")
    kwargs = {**init_args, **{k: v for k, v in linked.items() if k in parameters}}
    problem = ""
    try:
        signature.bind(**kwargs)
    except TypeError as error:
        problem = str(error)
    if problem:
        raise ValueError(
            f"{where}: {cls.__name__}: {problem} (only {', '.join(LINKED_ARGUMENTS)} are set from the data; "
            "give the others in init_args)"
        )
    return kwargs


def resolve_backbone_spec(backbone: Any, num_classes: int, input_shape: Sequence[int]) -> BackboneSpec:
    """The spec of ``backbone`` as checkpoints record it: names stay names; for a class,
    ``init_args`` checked against its signature, with the data's values (:data:`LINKED_ARGUMENTS`)
    in the arguments it declares with a default or as keyword-only.

    A linked argument without a default in front of the others (``num_classes`` in
    ``def __init__(self, num_classes, ...)``) is left out: the parser treats it as supplied at
    the call, and refuses it in ``init_args`` when a run is resumed from the checkpoint. It is
    set from the data again whenever the backbone is built.
    """
    spec = backbone_spec(backbone)
    if isinstance(spec, str):
        return spec
    cls = import_backbone_class(spec["class_path"])
    linked = linked_values(num_classes, input_shape)
    init_args = constructor_arguments(cls, spec["init_args"], linked, "backbone.init_args")
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        parameters = {}  # type: ignore[assignment]
    for name in LINKED_ARGUMENTS:
        parameter = parameters.get(name)
        if parameter is None or name not in init_args:
            continue
        positional = parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
        if positional and parameter.default is parameter.empty:
            del init_args[name]
    return {"class_path": spec["class_path"], "init_args": init_args}


def check_output_shape(net: nn.Module, input_shape: Sequence[int], num_classes: int, label: str) -> None:
    """Raise a ValueError unless ``net`` maps a (2, C, H, W) zero batch to (2, num_classes)."""
    was_training = net.training
    net.eval()
    out: Any = None
    problem = ""
    try:
        with torch.no_grad():
            out = net(torch.zeros(2, *input_shape))
    except Exception as error:  # any failure of a foreign forward on the data's input shape
        problem = f"{type(error).__name__}: {error}"
    finally:
        net.train(was_training)
    if problem:
        raise ValueError(
            f"backbone {label} does not run on inputs of shape (N, {', '.join(map(str, input_shape))}): {problem}"
        )
    if not isinstance(out, Tensor) or tuple(out.shape) != (2, num_classes):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"backbone {label} must return (N, num_classes) = (2, {num_classes}) logits for a batch of 2, got {got}"
        )


def build_backbone(
    name: Any,
    num_classes: int,
    input_shape: Sequence[int],
    activation: Activation = "relu",
    softplus_beta: float = 10.0,
    **kwargs: object,
) -> nn.Module:
    """Build the backbone ``name`` (any spec, see the module doc) for inputs of shape (C, H, W).

    Args:
        name: a built-in name, ``torchvision/<model name>``, ``timm/<model name>``, a dotted ``nn.Module`` class path,
            ``{"class_path": ..., "init_args": {...}}``, or an ``nn.Module`` class.
        num_classes: number of outputs.
        input_shape: (C, H, W) of one input.
        activation: "relu", or "softplus" to replace every ``nn.ReLU`` by softplus(``softplus_beta``).
        softplus_beta: β of the softplus activation.
        **kwargs: arguments of a named architecture (``width``, ``hidden``, ``batch_norm`` ...);
            a class spec takes its arguments in ``init_args`` instead.

    Raises:
        ValueError: naming the field, for an unknown name, a class that cannot be imported or
            is no ``nn.Module``, arguments it does not accept, an output that is not
            (N, num_classes) logits, or ``activation: softplus`` on a network without ``nn.ReLU``.
    """
    spec = backbone_spec(name)
    if activation not in ("relu", "softplus"):
        raise ValueError(f"activation must be one of ('relu', 'softplus'), got {activation!r}")
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {tuple(input_shape)}")
    c, h, w = (int(v) for v in input_shape)
    linked = linked_values(num_classes, input_shape)
    if isinstance(spec, dict) and kwargs:
        raise ValueError(
            f"backbone_kwargs {sorted(kwargs)} apply to named backbones; put the arguments of "
            f"{spec['class_path']} in backbone.init_args"
        )
    label = backbone_label(spec)
    net: nn.Module
    if isinstance(spec, str) and spec.startswith(TORCHVISION_PREFIX):
        check_backbone_name(spec)
        import torchvision

        tv_name = spec[len(TORCHVISION_PREFIX) :]
        net = torchvision.models.get_model(tv_name, weights=None, num_classes=num_classes, **kwargs)
        net.gradcam_layer = torchvision_gradcam_layer(tv_name, net)  # None: Grad-CAM needs a layer named
        if c == 1:
            net = nn.Sequential(ChannelRepeat(3), net)
        elif c != 3:
            raise ValueError(f"backbone {spec!r} takes 1 or 3 input channels, got input_shape {tuple(input_shape)}")
    elif isinstance(spec, str) and spec.startswith(TIMM_PREFIX):
        check_backbone_name(spec)
        net = TimmBackbone(spec, c, num_classes, (h, w), **kwargs)
    elif isinstance(spec, str):
        check_backbone_name(spec)
        cls = import_backbone_class(BUILTIN_BACKBONES.get(spec, spec))
        net = cls(**constructor_arguments(cls, kwargs, linked, "backbone_kwargs"))
    else:
        cls = import_backbone_class(spec["class_path"])
        net = cls(**constructor_arguments(cls, spec["init_args"], linked, "backbone.init_args"))
    check_output_shape(net, (c, h, w), num_classes, label)
    if activation == "softplus":
        if count_relus(net) == 0:
            raise ValueError(
                f"activation: softplus replaces the nn.ReLU modules of the backbone, and {label} has none "
                "(does it call F.relu?)"
            )
        relu_to_softplus(net, softplus_beta)
    return net
