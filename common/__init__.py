"""The ground floor: tensor helpers that attacks, attributions, losses, metrics and callbacks
share. Plain PyTorch and the standard library only; nothing here imports another robustlens
package, so every package can build on it without an import cycle.

- :mod:`common.modes`: run a model in a chosen train/eval mode and restore every submodule's flag
  (:func:`module_mode`).
- :mod:`common.example_noise`: random numbers keyed by the example, not the batch layout.
- :mod:`common.activations`: swap ReLUs for softplus(β), permanently or for a while.
- :mod:`common.filters`: Gaussian blur and Sobel gradients, per channel.
- :mod:`common.similarity`: top-k intersection, rank correlations and cosine of two map batches.
- :mod:`common.registry`: names for classes, filled where the classes are defined.
"""

from common.activations import count_relus, relu_to_softplus, softplus_relus
from common.example_noise import content_ids, example_ids, example_noise, example_seed
from common.filters import gaussian_blur, gaussian_kernel1d, sobel_magnitude
from common.modes import MODEL_MODES, ModelMode, module_mode
from common.registry import NameRegistry
from common.similarity import average_ranks, cosine, kendall, pearson, spearman, topk_intersection

__all__ = [
    "MODEL_MODES",
    "ModelMode",
    "NameRegistry",
    "average_ranks",
    "content_ids",
    "cosine",
    "count_relus",
    "example_ids",
    "example_noise",
    "example_seed",
    "gaussian_blur",
    "gaussian_kernel1d",
    "kendall",
    "module_mode",
    "pearson",
    "relu_to_softplus",
    "sobel_magnitude",
    "softplus_relus",
    "spearman",
    "topk_intersection",
]
