"""Model-independent control "explanations" that every sanity check needs.

- :class:`EdgeDetector`: the Sobel gradient magnitude of the image. Adebayo, Gilmer, Muelly,
  Goodfellow, Hardt & Kim ("Sanity Checks for Saliency Maps", NeurIPS 2018) show that several
  saliency methods look like edge detectors; a metric that scores the edge detector as well as a
  method cannot tell whether that method explains the model. Under model randomisation its
  similarity stays at 1.
- :class:`RandomAttribution`: uniform noise in [0, 1), the floor of every metric.

Both ignore the model and the target, and take the same call as every other method. Both are in
the report's default list (the floor and the edge check every table is read against), not in
the training callbacks'.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attributions.base import AttributionMethod
from common.filters import sobel_magnitude


class EdgeDetector(AttributionMethod, name="edge"):
    """Per-channel Sobel gradient magnitude of the input, sqrt(Gx² + Gy²).

    Args:
        create_graph: keep the result differentiable with respect to an input that requires
            grad (to attack the control as any other method).
    """

    uses_model = False

    def __init__(self, create_graph: bool = False) -> None:
        super().__init__(model_mode=None)
        self.create_graph = bool(create_graph)

    def attribute(self, model: nn.Module, inputs: Tensor, target: Tensor | None) -> Tensor:  # type: ignore[override]
        x = inputs if self.create_graph else inputs.detach()
        return sobel_magnitude(x)


class RandomAttribution(AttributionMethod, name="random"):
    """Uniform noise in [0, 1) shaped like the input.

    Args:
        seed: when set, draws come from a private generator created with this seed: the
            sequence of calls is reproducible, but successive calls differ (as a random
            explanation must); None draws from the global RNG.
    """

    uses_model = False

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(model_mode=None)
        self.seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}

    def attribute(self, model: nn.Module, inputs: Tensor, target: Tensor | None) -> Tensor:  # type: ignore[override]
        generator = None
        if self.seed is not None:
            if inputs.device not in self._generators:
                self._generators[inputs.device] = torch.Generator(device=inputs.device).manual_seed(self.seed)
            generator = self._generators[inputs.device]
        return torch.rand(inputs.shape, generator=generator, device=inputs.device, dtype=inputs.dtype)
