"""Axiomatic metrics: completeness, non-sensitivity and input invariance, by closed form and against Quantus 0.6."""

from __future__ import annotations

import warnings
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from attributions import InputXGradient, IntegratedGradients, Saliency
from metrics.functional.axiomatic import completeness, input_invariance, non_sensitivity, shifted_model
from tests.tiny import shapes_batch, smooth_mlp, tiny_cnn


class Quadratic(nn.Module):
    """f_k(x) = Σ_i W_ki x_i² + b_k: IG from 0 is exactly W x² (a polynomial path integral)."""

    def __init__(self, d: int, classes: int = 3) -> None:
        super().__init__()
        self.linear = nn.Linear(d, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.flatten(1) ** 2)


def quadratic_case() -> tuple[Quadratic, Tensor, Tensor]:
    torch.manual_seed(0)
    model = Quadratic(16).double().eval()
    x = torch.rand(5, 1, 4, 4, dtype=torch.float64)
    return model, x, torch.tensor([0, 1, 2, 0, 1])


def test_completeness_holds_for_integrated_gradients_and_fails_for_saliency() -> None:
    model, x, t = quadratic_case()
    phi_ig = IntegratedGradients(steps=4)(model, x, t)  # Gauss–Legendre: exact on a quadratic path
    assert completeness(model, x, t, phi_ig).max().item() < 1e-6  # the nodes' float rounding
    phi_sal = Saliency(abs=False)(model, x, t)  # 2 W x
    w = model.linear.weight[t].view(5, 1, 4, 4)
    expected = ((2 * w * x).sum(dim=(1, 2, 3)) - (w * x**2).sum(dim=(1, 2, 3))).abs()  # |Σ 2Wx − Σ Wx²|
    assert torch.allclose(completeness(model, x, t, phi_sal), expected.detach())
    relative = completeness(model, x, t, phi_sal, relative=True)
    assert torch.allclose(relative, expected.detach() / (w * x**2).sum(dim=(1, 2, 3)).abs().detach())
    assert relative.min().item() > 0.1


def test_completeness_of_ig_on_a_smooth_net_is_its_quadrature_error() -> None:
    model = smooth_mlp().eval()  # float64 softplus MLP
    x = torch.rand(6, 1, 2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    gaps = [completeness(model, x, y, IntegratedGradients(steps=s)(model, x, y), relative=True) for s in (1, 2, 32)]
    assert gaps[2].max().item() < 1e-5  # the quadrature nodes are float32
    assert gaps[0].mean() > gaps[1].mean() > 100 * gaps[2].mean()
    assert completeness(model, x, y, Saliency(abs=False)(model, x, y), relative=True).min().item() > 1e-3


def test_quantus_completeness_fails_exact_attributions_documented() -> None:
    """Quantus compares Σ Φ == Δf exactly after dividing Φ by the batch's largest |Φ|: exact IG fails."""
    quantus = pytest.importorskip("quantus")
    model, x, t = quadratic_case()
    model, x = model.float(), x.float()
    phi = IntegratedGradients(steps=4)(model, x, t)
    assert completeness(model, x, t, phi, relative=True).max().item() < 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantus.Completeness(disable_warnings=True)(
            model=model, x_batch=x.numpy(), y_batch=t.numpy(), a_batch=phi.detach().numpy(), channel_first=True, device="cpu"
        )
    assert not any(q)


def sparse_linear() -> nn.Module:
    """A linear model that ignores the left half of a 4×4 image."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    with torch.no_grad():
        model[1].weight.view(3, 4, 4)[:, :, :2] = 0.0
    return model


def sparse_attributions(x: Tensor) -> Tensor:
    g = torch.Generator().manual_seed(3)
    a = torch.rand(x.shape, generator=g) + 0.1
    a[:, :, :2, :] = 0.0  # no relevance on the top half: agrees on the top-left, not the top-right
    return a


def test_non_sensitivity_counts_disagreements_on_a_linear_model() -> None:
    model = sparse_linear()
    x, _ = shapes_batch(4, size=4)
    x = x + 0.1  # no zero pixels: removing a pixel changes the logit exactly when its weight is nonzero
    t = torch.tensor([0, 1, 2, 1])
    a = sparse_attributions(x)
    no_effect = (model[1].weight[t].view(4, 4, 4) * x[:, 0]).abs() < 1e-5
    expected = ((a[:, 0] == 0) ^ no_effect).flatten(1).sum(dim=1).double()
    assert torch.equal(non_sensitivity(model, x, t, a), expected)
    assert expected.min() > 0
    exact = InputXGradient()(model, x, t)  # W x: zero exactly where the pixel has no effect
    assert non_sensitivity(model, x, t, exact).eq(0).all()
    assert torch.equal(non_sensitivity(model, x, t, a, pass_budget=3), expected)  # batching-free


def test_non_sensitivity_equals_quantus() -> None:
    quantus = pytest.importorskip("quantus")
    model = sparse_linear()
    x, _ = shapes_batch(4, size=4)
    t = torch.tensor([0, 1, 2, 1])
    a = sparse_attributions(x)
    a[0, 0, 3, 3] = 1e-9  # below ε relative to the maximum: counted as no relevance
    assert (x == 0).any()  # pixels equal to the baseline are scored without a forward pass here
    own_max = a.flatten(1).max(dim=1).values.view(-1, 1, 1, 1)
    ours = non_sensitivity(model, x, t, a)
    for softmax, output in ((False, "logit"), (True, "probability")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = quantus.NonSensitivity(disable_warnings=True, normalise=False, eps=1e-5)(
                model=model, x_batch=x.numpy(), y_batch=t.numpy(), a_batch=(a / own_max).numpy(),
                channel_first=True, device="cpu", softmax=softmax,
            )
        assert non_sensitivity(model, x, t, a, output=output).tolist() == [float(v) for v in q]
    assert ours.min() > 0


def test_shifted_model_computes_the_same_function_and_leaves_the_model_alone() -> None:
    model = tiny_cnn(size=8).eval()  # Normalize, then a zero-padded convolution
    x, _ = shapes_batch(4, size=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tilde = shifted_model(model, x, -1.0)
    with torch.no_grad():
        assert torch.allclose(tilde(x - 1.0), model(x), atol=1e-5)
        assert not torch.allclose(tilde(x), model(x), atol=1e-3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert str(model) != str(tilde)  # the copy changed, not the caller's model


def test_input_invariance_saliency_invariant_input_x_gradient_and_ig_not() -> None:
    model = tiny_cnn(size=8, activation="softplus").eval()
    x, y = shapes_batch(6, size=8)
    x_before = x.clone()
    assert input_invariance(model, x, y, Saliency(abs=False)).max().item() < 1e-4
    assert input_invariance(model, x, y, InputXGradient()).min().item() > 0.1
    assert input_invariance(model, x, y, IntegratedGradients(steps=16)).min().item() > 0.1
    assert torch.equal(x, x_before)
    with pytest.raises(ValueError, match="shift"):
        input_invariance(model, x, y, Saliency(), shift="one")  # type: ignore[arg-type]


def test_input_invariance_against_quantus() -> None:
    """On an unpadded first convolution Quantus builds the same shifted model (same biases), but
    its shifted input leaves every image's first element unshifted (documented), so even saliency
    fails its allclose test, where the score here is 0 to float rounding."""
    quantus = pytest.importorskip("quantus")
    from quantus.helpers.model.pytorch_model import PyTorchModel

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Softplus(beta=5.0), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    x, y = shapes_batch(5, size=8)
    theirs = PyTorchModel(model, channel_first=True, softmax=False, device="cpu").add_mean_shift_to_first_layer(-1.0, (1, 1, 8, 8))
    ours = shifted_model(model, x, -1.0)
    assert torch.allclose(ours[0].bias, theirs[0].bias, atol=1e-6)

    seen: list[np.ndarray] = []
    saliency = Saliency(abs=False)

    def explain(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: object) -> np.ndarray:
        seen.append(inputs.copy())
        return saliency(model, torch.as_tensor(inputs), torch.as_tensor(targets)).detach().numpy()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantus.InputInvariance(disable_warnings=True)(
            model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=None, channel_first=True, device="cpu",
            explain_func=explain,
        )
    shift = (seen[1] - seen[0]).reshape(5, -1)
    assert (shift[:, 0] == 0).all() and (shift[:, 1:] == -1).all()  # the first element is not shifted
    assert not any(q)
    assert input_invariance(model, x, y, saliency).max().item() < 1e-5
    assert input_invariance(model, x, y, InputXGradient()).min().item() > 1e-2


# ---------------------------------------------------------------------------------------------
# By name


def test_axiomatic_metrics_by_name_equal_the_functions_and_check_their_options() -> None:
    from metrics import build_metric, compute_metrics, metric_spec
    from report.plan import _check_metric_names

    model = tiny_cnn(size=8, activation="softplus").eval()
    x, y = shapes_batch(4, size=8)
    method = InputXGradient()
    phi = method(model, x, y)
    names = ["completeness", "non_sensitivity", "input_invariance"]
    scores = compute_metrics(names, model, x, y, method, options={"completeness": {"relative": True}})
    assert torch.equal(scores["completeness"], completeness(model, x, y, phi, relative=True).float())
    assert torch.equal(scores["non_sensitivity"], non_sensitivity(model, x, y, phi).float())
    assert torch.allclose(scores["input_invariance"], input_invariance(model, x, y, method).float())
    assert _check_metric_names(names) == names
    assert all(metric_spec(n).higher_is_better is False for n in names)
    for name, options, field in (
        ("completeness", {"baseline": "black"}, "baseline"),
        ("non_sensitivity", {"output": "loss"}, "output"),
        ("non_sensitivity", {"output_eps": -1.0}, "output_eps"),
        ("input_invariance", {"shift": "one"}, "shift"),
    ):
        with pytest.raises(ValueError, match=field):
            build_metric(name, **options)
