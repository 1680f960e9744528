"""LRP, DeepLIFT-Rescale, occlusion, Score-CAM and Grad-CAM++: the equivalences of Ancona et al.
(ICLR 2018), hand computations of the CAM definitions, Captum's values on identical inputs,
robustlens's backbones under zennit, and the callbacks and sanity check that use them.

(The sweeps over every registered name in ``tests/test_attributions.py`` check that they leave
the model's modes, its weights' ``.grad`` and the input as found, and that batches are
independent.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attributions import (
    LRP,
    DeepLiftRescale,
    GradCAMPlusPlus,
    InputXGradient,
    Occlusion,
    ScoreCAM,
    attribution_names,
    build_attribution,
)
from attributions import lrp as lrp_module
from callbacks import ExplanationMonitor
from callbacks.attribution_panels import grid, save_png, strips, tile_names
from lightning_modules import build_model
from lightning_modules.backbones import Normalize
from metrics.functional import cascading_randomisation
from report import default_methods
from tests.trained_model import TrainedShapes

NEW_METHODS = ("lrp", "deeplift", "occlusion", "grad_cam_plus_plus", "score_cam")


def bias_free_relu_net() -> nn.Module:
    """Convolutions, ReLU, max-pooling and a dense layer, no biases anywhere, float64; a
    scale-only normalisation first (no shift, so still bias-free)."""
    torch.manual_seed(0)
    return nn.Sequential(
        Normalize((0.0,), (0.5,)),
        nn.Conv2d(1, 4, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 8, bias=False),
        nn.ReLU(),
        nn.Linear(8, 3, bias=False),
    ).double()


# -- Ancona et al.'s equivalences -----------------------------------------------------------------


def test_epsilon_lrp_and_deeplift_rescale_equal_input_times_gradient_without_biases() -> None:
    model, x = bias_free_relu_net(), torch.rand(4, 1, 8, 8, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 0])
    expected = InputXGradient()(model, x, target)
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(LRP(composite="epsilon", epsilon=1e-12)(model, x, target), expected)
    torch.testing.assert_close(DeepLiftRescale()(model, x, target), expected)
    # With ε > 0 LRP departs (relevance absorbed by the stabiliser): the test can tell.
    assert not torch.allclose(LRP(composite="epsilon", epsilon=1.0)(model, x, target), expected)


def test_deeplift_with_biases_sums_to_the_difference_from_the_baseline_and_is_not_the_gradient() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3), nn.Softplus(), nn.Linear(3, 3)).double()
    x, target = torch.rand(3, 1, 6, 6, dtype=torch.float64), torch.tensor([0, 1, 2])
    for baseline in ("zero", "blur"):
        method = DeepLiftRescale(baseline=baseline, blur_sigma=1.0)
        phi = method(model, x, target)
        with torch.no_grad():
            delta = model(x).gather(1, target[:, None]) - model(method.make_baseline(x)).gather(1, target[:, None])
        torch.testing.assert_close(phi.sum(dim=(1, 2, 3)), delta.squeeze(1))  # summation-to-delta
    assert not torch.allclose(DeepLiftRescale()(model, x, target), InputXGradient()(model, x, target), atol=1e-6, rtol=1e-3)


def test_occlusion_1_of_a_linear_model_is_input_times_weight() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(25, 3)).double()
    x, target = torch.rand(2, 1, 5, 5, dtype=torch.float64), torch.tensor([2, 0])
    phi = Occlusion(window=1, stride=1, batch_size=7)(model, x, target)  # chunks that split examples
    expected = x * model[1].weight[target].view(2, 1, 5, 5)
    torch.testing.assert_close(phi, expected.detach())
    # p × p windows: each pixel gets the mean drop of the windows over it.
    phi2 = Occlusion(window=2, stride=1, baseline=0.5)(model, x, target)
    w = model[1].weight[target].view(2, 5, 5).detach()
    drop = ((x[:, 0] - 0.5) * w)  # (B, 5, 5): a window's drop is the sum of its pixels' drops
    sums = F.avg_pool2d(drop[:, None], 2, stride=1) * 4  # (B, 1, 4, 4) drop per window
    count = F.conv_transpose2d(torch.ones(1, 1, 4, 4, dtype=x.dtype), torch.ones(1, 1, 2, 2, dtype=x.dtype))
    total = F.conv_transpose2d(sums, torch.ones(1, 1, 2, 2, dtype=x.dtype))
    torch.testing.assert_close(phi2, total / count)


def test_occlusion_leaves_uncovered_pixels_at_zero_and_rejects_bad_windows() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(25, 2))
    phi = Occlusion(window=2, stride=2)(model, torch.rand(1, 1, 5, 5), torch.tensor([0]))
    assert torch.all(phi[..., 4, :] == 0) and torch.all(phi[..., :, 4] == 0) and phi[..., :4, :4].abs().sum() > 0
    with pytest.raises(ValueError, match="window must be <= the image side"):
        Occlusion(window=6)(model, torch.rand(1, 1, 5, 5), torch.tensor([0]))
    for bad in ({"window": 0}, {"stride": 1.5}, {"batch_size": True}, {"baseline": "black"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Occlusion(**bad)


# -- the CAM definitions by hand ------------------------------------------------------------------


class TinyCAMNet(nn.Module):
    """conv(1→3) → ReLU (the CAM layer) → 1×1 conv → ReLU → dense: the score is not linear in
    the layer's activations, so Grad-CAM++'s weights differ from Grad-CAM's. Channel 2 is dead
    (zero weights, negative bias): a constant map, which Score-CAM must skip."""

    gradcam_layer = "relu"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(1, 3, 3, padding=1, stride=2)
        self.relu = nn.ReLU()
        self.mix = nn.Conv2d(3, 2, 1)
        self.relu2 = nn.ReLU()
        self.head = nn.Linear(2 * 4 * 4, 3)
        with torch.no_grad():
            self.conv.bias[:2] = 0.5  # live channels
            self.conv.weight[2].zero_()
            self.conv.bias[2] = -1.0

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.relu2(self.mix(self.relu(self.conv(x)))).flatten(1))


def test_score_cam_is_its_definition_by_hand() -> None:
    model = TinyCAMNet().double().eval()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    target = torch.tensor([1, 2])
    for weights in ("softmax", "probability"):
        got = ScoreCAM(channel_weights=weights, batch_size=4)(model, x, target)
        for b in range(2):
            with torch.no_grad():
                a = model.relu(model.conv(x[b : b + 1]))[0]  # (3, 4, 4)
                scores, kept = [], []
                for k in range(3):
                    up = F.interpolate(a[k][None, None], size=(8, 8), mode="bilinear", align_corners=False)[0, 0]
                    if up.max() == up.min():
                        continue
                    mask = (up - up.min()) / (up.max() - up.min())
                    out = model(x[b : b + 1] * mask)[0]
                    scores.append(out[target[b]] if weights == "softmax" else out.softmax(0)[target[b]])
                    kept.append(k)
                alpha = torch.stack(scores).softmax(0) if weights == "softmax" else torch.stack(scores)
                cam = F.relu(sum(alpha[i] * a[k] for i, k in enumerate(kept)))
                expected = F.interpolate(cam[None, None], size=(8, 8), mode="bilinear", align_corners=False)[0]
            assert kept == [0, 1]  # the dead channel was skipped
            torch.testing.assert_close(got[b], expected)


def test_grad_cam_plus_plus_is_its_definition_by_hand() -> None:
    model = TinyCAMNet().double().eval()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    target = torch.tensor([0, 2])
    got = GradCAMPlusPlus()(model, x, target)
    for b in range(2):
        xb = x[b : b + 1]
        a = model.relu(model.conv(xb)).detach().requires_grad_(True)
        score = model.head(model.relu2(model.mix(a)).flatten(1))[0, target[b]]
        (g,) = torch.autograd.grad(score, [a])
        a, g = a[0].detach(), g[0]
        weights = []
        for k in range(3):
            w = 0.0
            for i in range(4):
                for j in range(4):
                    denominator = 2 * g[k, i, j] ** 2 + a[k].sum() * g[k, i, j] ** 3
                    alpha = g[k, i, j] ** 2 / denominator if denominator != 0 else 0.0
                    w += alpha * max(float(g[k, i, j]), 0.0)
            weights.append(w)
        cam = F.relu(sum(weights[k] * a[k] for k in range(3)))
        expected = F.interpolate(cam[None, None], size=(8, 8), mode="bilinear", align_corners=False)[0]
        torch.testing.assert_close(got[b], expected)
    assert not torch.allclose(got, build_attribution("grad_cam")(model, x, target))


# -- Captum on identical inputs -------------------------------------------------------------------


class BiasedNet(nn.Module):
    """Conv, ReLU, max-pool, dense with biases; flattening inside forward (Captum's LRP has no
    rule for an nn.Flatten module)."""

    def __init__(self, pool: bool = True) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2) if pool else nn.AvgPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 6)
        self.relu2 = nn.ReLU()
        self.out = nn.Linear(6, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.relu2(self.fc(self.pool(self.relu(self.conv(x))).flatten(1))))


def test_captum_deeplift_occlusion_and_epsilon_lrp_agree() -> None:
    captum_attr = pytest.importorskip("captum.attr")
    x, target = torch.rand(3, 3, 8, 8, dtype=torch.float64), torch.tensor([0, 2, 1])
    model = BiasedNet(pool=False).double().eval()
    x = x.requires_grad_(True)  # as Captum wants its inputs (ours are left as found)
    reference = captum_attr.DeepLift(model).attribute(x, target=target, baselines=torch.zeros_like(x))
    torch.testing.assert_close(DeepLiftRescale()(model, x, target), reference)
    blurred = DeepLiftRescale(baseline="blur", blur_sigma=1.0)
    reference = captum_attr.DeepLift(model).attribute(x, target=target, baselines=blurred.make_baseline(x))
    torch.testing.assert_close(blurred(model, x, target), reference)

    model = BiasedNet().double().eval()
    for window, stride in ((3, 1), (2, 2)):
        reference = captum_attr.Occlusion(model).attribute(
            x, sliding_window_shapes=(3, window, window), strides=(3, stride, stride), target=target, baselines=0.25
        )
        ours = Occlusion(window=window, stride=stride, baseline=0.25, batch_size=10)(model, x, target)
        # Captum writes the drop in every channel (and sums in float32)
        torch.testing.assert_close(ours * 3, reference.to(ours.dtype), rtol=1e-5, atol=1e-6)

    reference = captum_attr.LRP(model).attribute(x, target=target)  # ε = 1e-9 on every layer
    torch.testing.assert_close(LRP(composite="epsilon", epsilon=1e-9)(model, x, target), reference)


# -- zennit on robustlens's backbones -------------------------------------------------------------


def backbone(name: str, channels: int = 3, size: int = 16, mean: float = 0.0, **kwargs: object) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, 3, (channels, size, size), (mean,) * channels, (0.5,) * channels, backbone_kwargs=kwargs).eval()


@pytest.mark.parametrize(("name", "kwargs"), [("preact_resnet18", {"width": 4}), ("wrn28_10", {"depth": 10, "widen_factor": 1})])
def test_residual_canonizer_keeps_the_function_and_makes_epsilon_lrp_input_times_gradient(
    name: str, kwargs: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fresh BatchNorms (no shift), no convolution biases, a zero dense bias and a scale-only
    normalisation: a bias-free ReLU network with skip connections, where ε-LRP is input ×
    gradient only if the residual sums split relevance by the summands (zennit's Sum)."""
    model = backbone(name, **kwargs).double()
    with torch.no_grad():
        model.net.linear.bias.zero_() if hasattr(model.net, "linear") else model.net.fc.bias.zero_()
    x, target = torch.rand(2, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 2])
    canonizers = lrp_module.canonizers_for(model)
    assert [type(c).__name__ for c in canonizers] == ["ResidualSumCanonizer"]
    with torch.no_grad():
        plain = model(x)
        applied = [instance for c in canonizers for instance in c.apply(model)]
        canonized = model(x)
        for instance in applied:
            instance.remove()
    torch.testing.assert_close(canonized, plain)  # the canonized forward is the block's forward
    expected = InputXGradient()(model, x, target)
    torch.testing.assert_close(LRP(composite="epsilon", epsilon=1e-12)(model, x, target), expected)
    monkeypatch.setattr(lrp_module, "RESIDUAL_FORWARDS", {})  # without the canonizer: relevance at each sum doubles
    assert not torch.allclose(LRP(composite="epsilon", epsilon=1e-12)(model, x, target), expected, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box", "epsilon"])
@pytest.mark.parametrize(
    ("name", "channels", "size", "kwargs"),
    [
        ("small_cnn", 1, 16, {"width": 4, "hidden": 16}),
        ("small_cnn", 3, 16, {"width": 4, "hidden": 16, "batch_norm": True}),
        ("preact_resnet18", 3, 16, {"width": 4}),
        ("wong2020_mnist", 1, 28, {}),
        ("madry2018_mnist", 1, 28, {"hidden": 16}),
        ("zhang2019_mnist", 1, 28, {"init": "pytorch"}),
        ("ismail2021_mnist", 1, 28, {}),
    ],
)
def test_lrp_runs_with_every_composite_on_every_builtin_backbone(
    composite: str, name: str, channels: int, size: int, kwargs: dict
) -> None:
    model = backbone(name, channels, size, mean=0.5, **kwargs)
    x = torch.rand(2, channels, size, size)
    with torch.no_grad():
        logits = model(x)
    target = logits.argmax(1)
    relevance = LRP(composite=composite)(model, x, target)
    assert relevance.shape == x.shape and torch.isfinite(relevance).all() and relevance.abs().sum() > 0
    if composite == "epsilon" and name == "ismail2021_mnist":
        # The log-softmax is skipped: the same relevance as the network that ends at the logits.
        plain = backbone(name, channels, size, mean=0.5, log_softmax=False, **kwargs)
        torch.testing.assert_close(relevance, LRP(composite=composite)(plain, x, target))


def test_epsilon_gamma_box_bounds_are_the_pixel_box_through_the_normalisation() -> None:
    model = backbone("small_cnn", 3, 16, mean=0.5, width=4, hidden=16)
    _, first, _ = lrp_module.input_layers(model)
    low, high = lrp_module.first_layer_bounds(model, first, torch.rand(2, 3, 16, 16))
    torch.testing.assert_close(low, torch.full((1, 3, 16, 16), -1.0))  # (0 − 0.5) / 0.5
    torch.testing.assert_close(high, torch.full((1, 3, 16, 16), 1.0))


class SharedConvOutput(nn.Module):
    """A convolution whose output feeds a BatchNorm and a skip: merging the BatchNorm into the
    convolution (zennit's SequentialMergeBatchNorm) would change the skip too."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)
        self.head = nn.Linear(2 * 8 * 8, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x)
        return self.head((self.bn(h) + h).flatten(1))


def test_lrp_refuses_a_model_its_canonizers_would_change_naming_it() -> None:
    torch.manual_seed(0)
    model = SharedConvOutput().eval()
    with torch.no_grad():
        model.bn.running_var.fill_(4.0)
        model.bn.running_mean.fill_(0.3)
    with pytest.raises(ValueError, match="lrp cannot explain SharedConvOutput: its canonizers"):
        LRP()(model, torch.rand(2, 1, 8, 8), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="composite must be one of"):
        build_attribution("lrp", composite="epsilon_plus")
    with pytest.raises(ValueError, match="must have a linear or convolutional layer for LRP; Sequential has none"):
        LRP().check_model(nn.Sequential(nn.ReLU()))


# -- registry, callbacks, panels, sanity check ----------------------------------------------------


def test_methods_without_a_differentiable_result_refuse_create_graph_and_the_top_k_attack() -> None:
    """Rather than an attack whose gradient is silently zero (an explanation that looks
    perfectly robust); Grad-CAM++ keeps its graph."""
    from metrics import compute_metric

    model, x = bias_free_relu_net().float(), torch.rand(2, 1, 8, 8)
    for name in ("lrp", "deeplift", "occlusion", "score_cam"):
        with pytest.raises(ValueError, match=f"is not differentiable .create_graph.: an attack on its explanation or a loss on it needs one of .*'saliency'"):
            compute_metric("topk_intersection@topk_attack", model, x, None, build_attribution(name), eps=0.1, steps=1)
    phi = build_attribution("grad_cam_plus_plus", layer="4", create_graph=True)(model, x.requires_grad_(True))
    assert phi.requires_grad


def test_the_new_methods_are_registered_in_the_report_list_and_not_the_callbacks() -> None:
    assert set(NEW_METHODS) <= set(default_methods())
    assert {"lrp_epsilon", "lrp_gamma_box"} <= set(attribution_names()) - set(default_methods())
    assert not set(NEW_METHODS) & set(attribution_names("callbacks"))  # every extra method there costs training time
    assert build_attribution("lrp_epsilon", epsilon=0.1).composite == "epsilon"


def test_the_monitor_scores_the_new_methods_and_their_panels_render(trained_shapes: TrainedShapes, tmp_path: Path) -> None:
    probe_size = 6
    monitor = ExplanationMonitor(
        methods=list(NEW_METHODS), method_options={"occlusion": {"window": 4, "stride": 4}},
        metrics=["spearman@noise", "relevance_mass"], probe_size=probe_size, batch_size=4, panels=2,
    )  # fmt: skip
    from datamodules import ProbeBatch

    n = probe_size
    probe = ProbeBatch(trained_shapes.x[:n], trained_shapes.y[:n], torch.arange(n), trained_shapes.masks[:n])
    monitor.use_probe(probe)
    scores = monitor.evaluate(trained_shapes.model, panels=2)
    assert set(scores.panels) == set(NEW_METHODS)
    for method, rows in scores.panels.items():
        assert all(torch.isfinite(torch.tensor(v)).all() for k, v in scores.values.items() if k.startswith(f"expl/{method}/"))
        image = grid(strips(rows), tile_names(with_mask=True))
        assert image.shape[0] > 0 and image.shape[1] > 0
        save_png(image, tmp_path / f"{method}.png")
        assert (tmp_path / f"{method}.png").stat().st_size > 0


@pytest.mark.parametrize("name", ["lrp", "score_cam"])
def test_lrp_and_score_cam_pass_the_randomisation_sanity_check(trained_shapes: TrainedShapes, name: str) -> None:
    """As the gradient does (tests/test_randomisation.py), where the edge detector stays at 1.
    (Input × gradient, DeepLIFT-Rescale and ε-LRP keep a rank correlation near 0.4 after every
    layer is randomised on this model: the input's own structure dominates them.)"""
    model, x, y = trained_shapes.model, trained_shapes.x[:32], trained_shapes.y[:32]
    result = cascading_randomisation(model, x, y, build_attribution(name))
    rho = result.spearman.nanmean(0)  # (L,), top layer first
    assert rho[-1] < 0.3 and rho[-1] < rho[0] - 0.2, rho
