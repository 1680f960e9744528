"""SmoothGrad and its squared and VarGrad variants, wrapping any other attribution method.

With n noisy copies x + ε_j, ε_j ~ N(0, σ²), σ = noise_level · (max(x) − min(x)) per example,
and Φ the wrapped method (for the papers, the signed gradient ∂f_t/∂x):

- SmoothGrad (Smilkov, Thorat, Kim, Viégas & Wattenberg, "SmoothGrad: removing noise by
  adding noise", 2017, eq. 2): Φ_SG(x) = (1/n) Σ_j Φ(x + ε_j);
- SmoothGrad² (Hooker, Erhan, Kindermans & Kim, "A Benchmark for Interpretability Methods in
  Deep Neural Networks", NeurIPS 2019): (1/n) Σ_j Φ(x + ε_j)²;
- VarGrad (Adebayo, Gilmer, Goodfellow & Kim, "Local Explanation Methods for Deep Neural
  Networks Lack Sensitivity to Parameter Values", ICLR workshop 2018): the variance
  (1/n) Σ_j (Φ(x + ε_j) − Φ_SG(x))².

"smoothgrad_abs" and "vargrad_abs" average and take the variance of |Φ(x + ε_j)| instead (what
Captum's NoiseTunnel does around its default absolute saliency); they are not the papers'
formulas (the variance of |∇| is smaller wherever the gradient changes sign across the noise).
Maps for display and for the metrics still take |·| at the end (:func:`attributions.pixel_map`).
The wrapped method is an object, or built here from a registered name or import path with
``base_kwargs``, or from a ``{class_path, init_args}`` node as a YAML file writes it::

    method_options: {smoothgrad: {base: {class_path: attributions.IntegratedGradients, init_args: {steps: 16}}}}

Built by name, "saliency" is the signed gradient (``abs=False``) unless told otherwise.

Each variant is a name with ``kind`` fixed (registered below the class); "smoothgrad" is in the
report's default list, the other four are not.

Every sample is one call of the wrapped method on the whole batch; the running mean and
variance are kept with Welford's update. All noisy copies explain the same class: the given
target, or the class predicted on the clean input. With a ``seed``, each image's noise is drawn
from (seed, its pixels, the sample index) (:mod:`common.example_noise`), so an image gets the
same result in any batch position.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from attributions.base import AttributionMethod, register_method
from common.example_noise import content_ids, example_noise
from common.modes import ModelMode

NoiseTunnel = Literal["smoothgrad", "smoothgrad_abs", "smoothgrad_sq", "vargrad", "vargrad_abs"]
NOISE_TUNNELS: tuple[str, ...] = ("smoothgrad", "smoothgrad_abs", "smoothgrad_sq", "vargrad", "vargrad_abs")

_SMOOTHGRAD_STREAM = 0x56


class SmoothGrad(AttributionMethod):
    """Average (or mean square, or variance) of a base method over noisy copies of the input.

    Args:
        base: the wrapped method: an object, a registered name or import path ("saliency", the
            signed gradient, by default), or a ``{class_path, init_args}`` node naming one.
        kind: "smoothgrad", "smoothgrad_abs", "smoothgrad_sq", "vargrad" or "vargrad_abs".
        n_samples: noisy copies n (Smilkov et al. use 50).
        noise_level: σ as a fraction of each example's value range max(x) − min(x)
            (Smilkov et al. recommend 0.1–0.2).
        seed: when set, each image's noise comes from private generators seeded by (seed, its
            pixels, the sample) on every call: the method is deterministic, independent of the
            batch layout, and the global RNG is left alone. None draws from the global RNG.
        base_kwargs: constructor arguments of ``base`` when it is given by name.
        create_graph: when ``base`` is built here, passed to it; when ``base`` is an object,
            must be None or agree with it.
        model_mode: mode of the model for the predicted-class forward ("eval", "train", None);
            the base method chooses its own.
    """

    def __init__(
        self,
        base: str | AttributionMethod | Mapping[str, Any] = "saliency",
        kind: NoiseTunnel = "smoothgrad",
        n_samples: int = 50,
        noise_level: float = 0.15,
        seed: int | None = None,
        base_kwargs: dict[str, Any] | None = None,
        create_graph: bool | None = None,
        model_mode: ModelMode | None = "eval",
    ) -> None:
        super().__init__(model_mode)
        if kind not in NOISE_TUNNELS:
            raise ValueError(f"kind must be one of {NOISE_TUNNELS}, got {kind!r}")
        if int(n_samples) != n_samples or n_samples < 1:
            raise ValueError(f"n_samples must be an integer >= 1, got {n_samples}")
        if not noise_level >= 0:
            raise ValueError(f"noise_level must be >= 0, got {noise_level}")
        if isinstance(base, AttributionMethod):
            if base_kwargs:
                raise ValueError("base_kwargs must be empty when base is given as an object")
            if create_graph is not None and bool(create_graph) != base.create_graph:
                raise ValueError(
                    f"create_graph must be None or equal to the base method's ({base.create_graph}), got {create_graph}"
                )
        else:
            base = _build_base(base, base_kwargs, create_graph)
        self.base = base
        self.kind = kind
        self.n_samples = int(n_samples)
        self.noise_level = float(noise_level)
        self.seed = seed
        self.create_graph = base.create_graph

    def with_create_graph(self, create_graph: bool = True) -> SmoothGrad:
        clone = copy.copy(self)
        clone.base = self.base.with_create_graph(create_graph)
        clone.create_graph = clone.base.create_graph
        return clone

    def check_model(self, model: nn.Module) -> None:
        """The base method's check."""
        self.base.check_model(model)

    def attribute(self, model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
        x = inputs if self.create_graph else inputs.detach()
        flat = x.detach().flatten(1)
        sigma = self.noise_level * (flat.max(dim=1).values - flat.min(dim=1).values)  # (B,)
        sigma = sigma.view(-1, *([1] * (x.dim() - 1)))
        ids = content_ids(x) if self.seed is not None else None  # (B,) from the pixels
        mean = torch.zeros_like(x)
        m2 = torch.zeros_like(x)  # Σ (Φ − mean)², Welford
        variance = self.kind.startswith("vargrad")
        for j in range(self.n_samples):
            if ids is None:
                noise = torch.randn(x.shape, device=x.device, dtype=x.dtype)
            else:
                noise = example_noise(tuple(x.shape[1:]), ids, int(self.seed), _SMOOTHGRAD_STREAM, j, "normal", x.dtype)  # type: ignore[arg-type]
            phi = self.base(model, x + sigma * noise, target)  # (B, C, H, W)
            if self.kind == "smoothgrad_sq":
                phi = phi * phi
            elif self.kind.endswith("_abs"):
                phi = phi.abs()
            delta = phi - mean
            mean = mean + delta / (j + 1)
            if variance:
                m2 = m2 + delta * (phi - mean)
        return m2 / self.n_samples if variance else mean


def _build_base(base: object, base_kwargs: Mapping[str, Any] | None, create_graph: bool | None) -> AttributionMethod:
    """The method a name, an import path or a ``{class_path, init_args}`` node stands for."""
    registry = AttributionMethod.registry
    if isinstance(base, Mapping):
        if "class_path" not in base or not set(base) <= {"class_path", "init_args"}:
            raise ValueError(f"base must be a {{class_path, init_args}} node when given as a mapping, got {dict(base)!r}")
        if base_kwargs:
            raise ValueError("base_kwargs must be empty when base is a {class_path, init_args} node (its init_args hold them)")
        base, base_kwargs = base["class_path"], base.get("init_args") or {}
    if not isinstance(base, str):
        raise ValueError(f"base must be an attribution method, its name or import path, or a {{class_path, init_args}} node, got {base!r}")
    try:
        entry = registry.entry(base)
    except ValueError as error:
        raise ValueError(f"base must be an attribution method or a registered one: {error}") from None
    if issubclass(entry.cls, SmoothGrad):
        tunnels = tuple(n for n in registry.names() if issubclass(registry.entry(n).cls, SmoothGrad))
        raise ValueError(f"base must be a method other than the noise tunnels {tunnels}, got {base!r}")
    kwargs = dict(base_kwargs or {})
    if create_graph is not None:
        kwargs["create_graph"] = create_graph
    if entry.name == "saliency":
        kwargs.setdefault("abs", False)  # the papers smooth the signed gradient
    return entry.build(**kwargs)


for _kind in NOISE_TUNNELS:
    register_method(_kind, SmoothGrad, default_in=("report",) if _kind == "smoothgrad" else (), kind=_kind)
