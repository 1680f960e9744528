"""Attribution methods: closed forms, completeness, wrappers, controls, and leaving things as found."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attributions import (
    AttributionMethod,
    EdgeDetector,
    GradCAM,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    RandomAttribution,
    Saliency,
    SmoothGrad,
    attribution_names,
    build_attribution,
    default_gradcam_layer,
    pixel_map,
)
from common.activations import relu_to_softplus
from common.example_noise import content_ids, example_noise
from lightning_modules import build_model

FAST_OPTIONS = {
    "integrated_gradients": {"steps": 8},
    "smoothgrad": {"n_samples": 3, "seed": 0},
    "smoothgrad_abs": {"n_samples": 3, "seed": 0},
    "smoothgrad_sq": {"n_samples": 3, "seed": 0},
    "vargrad": {"n_samples": 3, "seed": 0},
    "vargrad_abs": {"n_samples": 3, "seed": 0},
}


def small_cnn(channels: int = 1, size: int = 16, batch_norm: bool = False, classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return build_model(
        "small_cnn",
        classes,
        (channels, size, size),
        (0.5,) * channels,
        (0.25,) * channels,
        backbone_kwargs={"width": 4, "hidden": 16, "batch_norm": batch_norm},
    )


def smooth_net() -> nn.Module:
    """A small nonlinear (tanh) convolutional net: smooth, so quadrature errors are small."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.Tanh(),
        nn.Conv2d(4, 4, 3, padding=1, stride=2),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 3),
    )


def test_linear_model_closed_forms() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(2 * 5 * 5, 4)
    model = nn.Sequential(nn.Flatten(), linear)
    x = torch.rand(6, 2, 5, 5)
    target = torch.tensor([0, 1, 2, 3, 0, 1])
    weight_rows = linear.weight.detach()[target].view(6, 2, 5, 5)
    torch.testing.assert_close(Saliency(abs=False)(model, x, target), weight_rows)
    torch.testing.assert_close(Saliency(abs=True)(model, x, target), weight_rows.abs())
    torch.testing.assert_close(InputXGradient()(model, x, target), weight_rows * x)
    # On a linear model IG with a zero baseline is input × gradient at any number of steps.
    torch.testing.assert_close(IntegratedGradients(steps=3)(model, x, target), weight_rows * x)


@pytest.mark.parametrize("baseline", ["zero", "blur", "uniform"])
def test_integrated_gradients_completeness(baseline: str) -> None:
    model = smooth_net()
    x = torch.rand(5, 1, 16, 16)
    target = torch.tensor([0, 1, 2, 0, 1])
    ig = IntegratedGradients(steps=64, baseline=baseline)  # type: ignore[arg-type]
    attribution = ig(model, x, target)
    reference = ig.make_baseline(x)
    with torch.no_grad():
        gap = model(x).gather(1, target[:, None]).squeeze(1) - model(reference).gather(1, target[:, None]).squeeze(1)
    total = attribution.flatten(1).sum(dim=1)
    assert torch.all((total - gap).abs() <= 0.01 * gap.abs()), (total, gap)


@pytest.mark.parametrize("rule", ["riemann_middle", "riemann_trapezoid"])
def test_integrated_gradients_riemann_rules_converge(rule: str) -> None:
    model = smooth_net()
    x = torch.rand(3, 1, 16, 16)
    target = torch.tensor([0, 1, 2])
    exact = IntegratedGradients(steps=64)(model, x, target)
    approx = IntegratedGradients(steps=256, rule=rule)(model, x, target)  # type: ignore[arg-type]
    assert (approx - exact).abs().sum() < 0.01 * exact.abs().sum()


def test_integrated_gradients_chunking_does_not_change_the_result() -> None:
    model = small_cnn()
    x = torch.rand(4, 1, 16, 16)
    whole = IntegratedGradients(steps=10, internal_batch_size=None)(model, x)
    for size in (1, 4, 9, 12):  # one step per pass, uneven last chunk, ...
        chunked = IntegratedGradients(steps=10, internal_batch_size=size)(model, x)
        torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)


def test_smoothgrad_variants_without_noise_reduce_to_the_base() -> None:
    model = small_cnn()
    x = torch.rand(4, 1, 16, 16)
    signed = Saliency(abs=False)(model, x)
    for level in (0.0, 1e-6):  # σ → 0: the signed gradient (a ReLU net's gradient is locally constant)
        options = {"n_samples": 3, "noise_level": level, "seed": 0}
        torch.testing.assert_close(build_attribution("smoothgrad", **options)(model, x), signed)
        torch.testing.assert_close(build_attribution("smoothgrad_abs", **options)(model, x), signed.abs())
        torch.testing.assert_close(build_attribution("smoothgrad_sq", **options)(model, x), signed**2)
        for name in ("vargrad", "vargrad_abs"):
            torch.testing.assert_close(build_attribution(name, **options)(model, x), torch.zeros_like(x))


class HalfSquare(nn.Module):
    """Logits (q, −q) with q = ½‖x‖²: the signed input gradient of class 0 is x itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = 0.5 * x.flatten(1).pow(2).sum(1)
        return torch.stack([q, -q], dim=1)


def test_smoothgrad_and_vargrad_follow_the_papers_signed_formulas() -> None:
    # ∇ at x + ε_j is x + ε_j: SmoothGrad = x + mean_j ε_j, VarGrad = var_j ε_j (signed), while
    # the _abs variants average |x + ε_j|, which differs wherever x + ε_j changes sign.
    x = torch.rand(3, 1, 4, 4) - 0.5
    target = torch.zeros(3, dtype=torch.long)
    n, level, seed = 6, 0.5, 3
    sigma = level * (x.flatten(1).max(1).values - x.flatten(1).min(1).values).view(-1, 1, 1, 1)
    noise = torch.stack([sigma * example_noise((1, 4, 4), content_ids(x), seed, 0x56, j, "normal") for j in range(n)])
    samples = x + noise  # (n, B, C, H, W) the gradients at the noisy copies
    options = {"n_samples": n, "noise_level": level, "seed": seed}
    model = HalfSquare()
    torch.testing.assert_close(build_attribution("smoothgrad", **options)(model, x, target), samples.mean(0))
    torch.testing.assert_close(
        build_attribution("vargrad", **options)(model, x, target), noise.var(0, unbiased=False), rtol=1e-4, atol=1e-6
    )
    torch.testing.assert_close(build_attribution("smoothgrad_abs", **options)(model, x, target), samples.abs().mean(0))
    torch.testing.assert_close(
        build_attribution("vargrad_abs", **options)(model, x, target), samples.abs().var(0, unbiased=False), rtol=1e-4, atol=1e-6
    )
    torch.testing.assert_close(build_attribution("smoothgrad_sq", **options)(model, x, target), samples.pow(2).mean(0))
    assert not torch.allclose(samples.abs().var(0), samples.var(0))  # the sign matters here


@pytest.mark.parametrize("name", ["smoothgrad", "vargrad", "smoothgrad_abs"])
def test_seeded_smoothgrad_does_not_depend_on_batch_order(name: str) -> None:
    model = small_cnn(channels=3)
    x = torch.rand(5, 3, 16, 16)
    target = torch.tensor([0, 1, 2, 0, 1])
    method = build_attribution(name, n_samples=4, seed=11)
    whole = method(model, x, target)
    order = torch.tensor([3, 0, 4, 2, 1])
    torch.testing.assert_close(method(model, x[order], target[order]), whole[order])
    torch.testing.assert_close(method(model, x[2:3], target[2:3]), whole[2:3])
    assert not torch.allclose(build_attribution(name, n_samples=4, seed=12)(model, x, target), whole)


def test_uniform_integrated_gradients_baseline_follows_the_image_not_its_position() -> None:
    ig = IntegratedGradients(steps=4, baseline="uniform", seed=5)
    x = torch.rand(4, 1, 8, 8)
    baseline = ig.make_baseline(x)  # (4, 1, 8, 8)
    assert baseline.min() >= 0 and baseline.max() < 1
    assert not torch.allclose(baseline[0], baseline[1])  # images get their own baselines
    order = torch.tensor([2, 3, 1, 0])
    torch.testing.assert_close(ig.make_baseline(x[order]), baseline[order])
    torch.testing.assert_close(ig.make_baseline(x[1:2]), baseline[1:2])
    torch.testing.assert_close(ig.make_baseline(torch.cat([x[1:2], torch.rand(6, 1, 8, 8)]))[0], baseline[1])
    assert not torch.allclose(IntegratedGradients(baseline="uniform", seed=6).make_baseline(x), baseline)
    model = small_cnn(size=8)
    target = torch.tensor([0, 1, 2, 0])
    torch.testing.assert_close(ig(model, x[order], target[order]), ig(model, x, target)[order])


def test_grad_cam_is_class_activation_mapping_on_a_gap_network() -> None:
    # conv -> global average pooling -> linear: α_k = W_tk / (h·w), so Grad-CAM is ReLU(Σ_k W_tk A_k)/(h·w).
    torch.manual_seed(0)
    conv, fc = nn.Conv2d(2, 5, 3, padding=1), nn.Linear(5, 3)
    x = torch.rand(4, 2, 8, 8)
    target = torch.tensor([0, 1, 2, 1])
    for model, maps in (
        (nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc), conv),  # default: the conv "0"
        (nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc), lambda t: torch.relu(conv(t))),
    ):
        with torch.no_grad():
            a = maps(x)  # (B, 5, 8, 8)
            cam = torch.relu((fc.weight[target][:, :, None, None] * a).sum(1, keepdim=True)) / 64
        out = GradCAM()(model, x, target)  # with a ReLU after the conv: its output, "1"
        assert out.shape == x.shape
        torch.testing.assert_close(pixel_map(out, "sum"), cam[:, 0])
    torch.testing.assert_close(GradCAM(layer="1")(model, x, target), out)


def test_grad_cam_on_preact_resnet18_defaults_to_the_final_relu_and_equals_cam() -> None:
    torch.manual_seed(0)
    model = build_model("preact_resnet18", 3, (3, 16, 16), (0.5,) * 3, (0.25,) * 3, backbone_kwargs={"width": 4}).eval()
    net = model.net
    for module in net.modules():  # non-trivial BatchNorm statistics
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    x = torch.rand(3, 3, 16, 16)
    target = torch.tensor([2, 0, 1])
    captured = []
    handle = net.relu.register_forward_hook(lambda m, args, out: captured.append(out.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    a = captured[0]  # (B, 32, 2, 2): the last block after the final BN-ReLU
    cam = (net.linear.weight[target][:, :, None, None] * a).sum(1, keepdim=True)  # Zhou et al.'s CAM
    expected = F.interpolate(torch.relu(cam) / (a.shape[2] * a.shape[3]), size=(16, 16), mode="bilinear")
    torch.testing.assert_close(pixel_map(GradCAM()(model, x, target), "sum"), expected[:, 0])
    # The pre-activation output of the last convolution leaves the residual stream out: not CAM.
    inner = pixel_map(GradCAM(layer="net.layer4.1.conv2")(model, x, target), "sum")
    assert not torch.allclose(inner, expected[:, 0], atol=1e-4)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_grad_cam_default_layer_is_the_rectified_last_conv_maps_of_small_cnn(batch_norm: bool) -> None:
    model = small_cnn(channels=3, size=16, batch_norm=batch_norm).eval()
    net = model.net
    x = torch.rand(4, 3, 16, 16)
    target = torch.tensor([0, 1, 2, 0])
    last_relu = int(net.gradcam_layer.split(".")[1])
    assert isinstance(net.features[last_relu], nn.ReLU) and isinstance(net.features[last_relu + 1], nn.MaxPool2d)
    # By hand: A = the ReLU's output, α = the spatial mean of ∂f_t/∂A, map = ReLU(Σ_k α_k A_k).
    a = net.features[: last_relu + 1](model.normalize(x)).detach().requires_grad_(True)  # (B, 8, 8, 8)
    logits = net.classifier(net.features[last_relu + 1 :](a))
    (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), [a])
    cam = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * a).sum(1, keepdim=True)).detach()
    expected = F.interpolate(cam, size=(16, 16), mode="bilinear")[:, 0]
    assert (a >= 0).all()
    torch.testing.assert_close(pixel_map(GradCAM()(model, x, target), "sum"), expected)


def test_every_builtin_backbone_names_a_rectified_grad_cam_layer() -> None:
    models = [
        (small_cnn(channels=1, size=16), 16),
        (small_cnn(channels=1, size=16, batch_norm=True), 16),
        (build_model("preact_resnet18", 3, (1, 16, 16), (0.5,), (0.25,), backbone_kwargs={"width": 4}), 16),
        (build_model("torchvision/squeezenet1_1", 3, (1, 48, 48), (0.5,), (0.25,)), 48),  # torchvision: one here, all slow
    ]
    for model, size in models:
        assert_rectified_grad_cam_layer(model.eval(), torch.rand(2, 1, size, size))


def assert_rectified_grad_cam_layer(model: nn.Module, x: torch.Tensor) -> None:
    name = default_gradcam_layer(model)
    captured = []
    handle = model.get_submodule(name).register_forward_hook(lambda m, args, out: captured.append(out))
    with torch.no_grad():
        model(x)
    handle.remove()
    assert len(captured) == 1 and captured[0].dim() == 4, name
    assert captured[0].min() >= 0, name
    assert GradCAM()(model, x).shape == x.shape


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    ["resnet18", "vgg11", "alexnet", "mobilenet_v2", "densenet121", "mnasnet0_5", "shufflenet_v2_x0_5",
     "regnet_x_400mf", "googlenet"],
)
def test_torchvision_backbones_name_a_rectified_grad_cam_layer(name: str) -> None:
    model = build_model(f"torchvision/{name}", 3, (3, 64, 64), (0.5,) * 3, (0.25,) * 3).eval()
    assert_rectified_grad_cam_layer(model, torch.rand(2, 3, 64, 64))


def test_grad_cam_upsamples_and_rejects_unknown_layers() -> None:
    model = small_cnn(channels=3, size=16)
    x = torch.rand(2, 3, 16, 16)
    out = GradCAM(layer="net.features.6")(model, x)  # any module by name: a conv at 8 × 8 resolution
    assert out.shape == x.shape
    with pytest.raises(ValueError, match="layer must be"):
        GradCAM(layer="net.nope")(model, x)
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        GradCAM()(nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2)), x)
    declines = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.LazyLinear(2))
    declines.gradcam_layer = None  # a model that says it has no Grad-CAM layer (a transformer)
    with pytest.raises(ValueError, match="layer must name a module"):
        GradCAM()(declines, x)


def test_guided_backprop_closed_form_on_one_hidden_layer() -> None:
    torch.manual_seed(0)
    first, second = nn.Linear(12, 7), nn.Linear(7, 3)
    model = nn.Sequential(nn.Flatten(), first, nn.ReLU(), second)
    x = torch.randn(5, 3, 2, 2)
    target = torch.tensor([0, 1, 2, 0, 1])
    with torch.no_grad():
        active = (first(x.flatten(1)) > 0).float()  # (B, 7)
        signal = active * second.weight[target].clamp(min=0)  # (B, 7)
        expected = (signal @ first.weight).view_as(x)
    torch.testing.assert_close(GuidedBackprop()(model, x, target), expected)
    assert isinstance(model[2], nn.ReLU)  # the swap is undone


def test_edge_detector_and_random_controls_ignore_the_model() -> None:
    x = torch.zeros(2, 1, 8, 8)
    x[:, :, :, 4:] = 1.0  # a vertical step edge between columns 3 and 4
    edges = EdgeDetector()(small_cnn(size=8), x)
    assert edges.shape == x.shape
    assert torch.all(edges[..., 3:5] > 1.0) and torch.all(edges[..., :2] < 1e-5) and torch.all(edges[..., 6:] < 1e-5)
    torch.testing.assert_close(EdgeDetector()(nn.Identity(), x), edges)
    noise = RandomAttribution(seed=3)
    first, second = noise(nn.Identity(), x), noise(nn.Identity(), x)
    assert first.shape == x.shape and 0 <= float(first.min()) and float(first.max()) < 1
    assert not torch.equal(first, second)  # successive calls differ ...
    torch.testing.assert_close(RandomAttribution(seed=3)(nn.Identity(), x), first)  # ... reproducibly


@pytest.mark.parametrize("name", [n for n in attribution_names() if n != "random"])
def test_predicted_class_is_the_default_target_and_batches_are_independent(name: str) -> None:
    model = small_cnn(channels=3)
    x = torch.rand(4, 3, 16, 16)
    method = build_attribution(name, **FAST_OPTIONS.get(name, {}))
    with torch.no_grad():
        predicted = model(x).argmax(1)
    full = method(model, x)
    assert full.shape == x.shape and torch.isfinite(full).all()
    torch.testing.assert_close(method(model, x, predicted), full)
    single = torch.cat([method(model, x[i : i + 1], predicted[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(single, full, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", attribution_names())
@pytest.mark.parametrize("input_requires_grad", [False, True])
def test_methods_leave_model_mode_weight_grads_and_input_as_found(name: str, input_requires_grad: bool) -> None:
    model = small_cnn(batch_norm=True)
    model.train()
    model.net.features[1].eval()  # a submodule disagreeing with the root must be restored too
    params = list(model.parameters())
    params[0].grad = torch.full_like(params[0], 0.5)  # some .grad set, the others None
    modes = [m.training for m in model.modules()]
    running_mean = model.net.features[1].running_mean.clone()
    x = torch.rand(3, 1, 16, 16).requires_grad_(input_requires_grad)
    method = build_attribution(name, **FAST_OPTIONS.get(name, {}))
    method(model, x, torch.tensor([0, 1, 2]))
    with torch.inference_mode():  # Lightning's validation loop
        method(model, torch.rand(3, 1, 16, 16))
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(params[0].grad, torch.full_like(params[0], 0.5))
    assert all(p.grad is None for p in params[1:])
    assert x.requires_grad == input_requires_grad and x.grad is None
    torch.testing.assert_close(model.net.features[1].running_mean, running_mean)  # eval mode: stats untouched


@pytest.mark.parametrize("name", ["saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "grad_cam", "guided_backprop", "edge"])
def test_create_graph_keeps_the_result_differentiable(name: str) -> None:
    model = relu_to_softplus(small_cnn(), 10.0)  # second derivatives of a ReLU net vanish
    x = torch.rand(2, 1, 16, 16, requires_grad=True)
    method = build_attribution(name, create_graph=True, **FAST_OPTIONS.get(name, {}))
    out = method(model, x, torch.tensor([0, 1]))
    assert out.requires_grad
    (grad_x,) = torch.autograd.grad(out.pow(2).sum(), [x], retain_graph=True)
    assert grad_x.abs().sum() > 0
    if name != "edge":
        weight = next(model.parameters())
        (grad_w,) = torch.autograd.grad(out.pow(2).sum(), [weight])
        assert grad_w.abs().sum() > 0
    assert not method.with_create_graph(False)(model, x, torch.tensor([0, 1])).requires_grad


def test_smoothgrad_takes_its_base_as_an_object_a_name_an_import_path_or_a_class_path_node() -> None:
    from jsonargparse import ArgumentParser

    model, x, target = small_cnn(), torch.rand(2, 1, 16, 16), torch.tensor([0, 2])
    noise = {"n_samples": 3, "seed": 0}
    expected = SmoothGrad(IntegratedGradients(steps=4), **noise)(model, x, target)
    node = {"class_path": "attributions.IntegratedGradients", "init_args": {"steps": 4}}
    built = [
        SmoothGrad("integrated_gradients", base_kwargs={"steps": 4}, **noise),
        SmoothGrad("attributions.IntegratedGradients", base_kwargs={"steps": 4}, **noise),
        SmoothGrad(node, **noise),  # as a callback's method_options pass it on from YAML
        build_attribution("smoothgrad", base=node, **noise),
    ]
    parser = ArgumentParser()  # and as jsonargparse builds a SmoothGrad given by class_path
    parser.add_argument("--method", type=AttributionMethod)
    config = parser.parse_args(["--method", str({"class_path": "attributions.SmoothGrad", "init_args": {"base": node, **noise}})])
    built.append(parser.instantiate_classes(config).method)
    for method in built:
        assert isinstance(method.base, IntegratedGradients) and method.base.steps == 4
        torch.testing.assert_close(method(model, x, target), expected)
    with pytest.raises(ValueError, match="base must be a {class_path, init_args} node"):
        SmoothGrad({**node, "args": {}})
    with pytest.raises(ValueError, match="base_kwargs must be empty"):
        SmoothGrad(node, base_kwargs={"steps": 8})
    with pytest.raises(ValueError, match="base must be an attribution method or a registered one: method must be one of"):
        SmoothGrad("integrated_gradient")


def test_registry_errors_name_the_allowed_values() -> None:
    with pytest.raises(ValueError, match="method must be one of .*saliency.*random"):
        build_attribution("gradcam")
    with pytest.raises(ValueError, match="options must be among"):
        build_attribution("saliency", steps=3)
    with pytest.raises(ValueError, match="steps must be"):
        build_attribution("integrated_gradients", steps=0)
    with pytest.raises(ValueError, match="baseline must be one of"):
        build_attribution("integrated_gradients", baseline="black")
    with pytest.raises(ValueError, match="base must be"):
        build_attribution("smoothgrad", base="vargrad")
    sg = build_attribution("vargrad", base="integrated_gradients", base_kwargs={"steps": 4}, create_graph=True)
    assert isinstance(sg, SmoothGrad) and sg.kind == "vargrad" and sg.create_graph
    assert isinstance(sg.base, IntegratedGradients) and sg.base.steps == 4


def test_pixel_map_sums_over_channels() -> None:
    a = torch.tensor([[[[1.0, -2.0]], [[-3.0, 4.0]]]])  # (1, 2, 1, 2)
    torch.testing.assert_close(pixel_map(a), torch.tensor([[[4.0, 6.0]]]))
    torch.testing.assert_close(pixel_map(a, "sum"), torch.tensor([[[-2.0, 2.0]]]))
    with pytest.raises(ValueError, match="reduction must be one of"):
        pixel_map(a, "max")  # type: ignore[arg-type]
