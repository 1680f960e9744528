"""Values a dataset must hold: pixels finite and in [0, 1], labels in [0, num_classes).

A NaN pixel, an image stored in [0, 255] where [0, 1] is expected, or a label of 10 in a
10-class file would otherwise train a model for hours on garbage (NaN spreads into the loss; a
label out of range fails in ``cross_entropy`` after the run's folders exist, or on the GPU as a
device-side assert). Every reader checks what it loads once, when the data is set up, over the
whole array at once (vectorised, in chunks of :data:`CHUNK` examples so the check needs little
memory beyond the data itself), and names the file and the first bad example's index.

uint8 pixels need no check: divided by 255 they lie in [0, 1] by construction. Image folders
are decoded to uint8 (wider modes are refused from the file header, :mod:`datamodules.image_folder`),
so their pixels need no check either, and their labels come from the folder names.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

CHUNK = 4096


def check_labels(labels: Tensor, num_classes: int, where: str | Path, offset: int = 0) -> Tensor:
    """``labels`` itself, after checking that every label lies in [0, num_classes).

    Args:
        labels: (N,) integer labels.
        num_classes: the number of classes.
        where: the file (or other source) the labels come from, for the message.
        offset: the index of ``labels[0]`` in that source.

    Raises:
        ValueError: naming ``where``, the first bad index, its label, and how many are bad.
    """
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{where}: labels must be integers, got {labels.dtype}")
    bad = (labels < 0) | (labels >= num_classes)
    if bool(bad.any()):
        positions = bad.nonzero().flatten()
        first = int(positions[0])
        others = len(positions) - 1
        more = f" ({others} more {'label is' if others == 1 else 'labels are'} out of range too)" if others else ""
        raise ValueError(
            f"{where}: labels must lie in [0, {num_classes - 1}]; example {offset + first} has label "
            f"{int(labels[first])}{more}"
        )
    return labels


def check_pixels(images: Tensor, where: str | Path, offset: int = 0) -> None:
    """Check that float images are finite and lie in [0, 1] (uint8 images always do).

    Args:
        images: (N, ...) images, uint8 or floating point.
        where: the file (or other source) they come from, for the message.
        offset: the index of ``images[0]`` in that source.

    Raises:
        ValueError: naming ``where``, the first bad example's index and value, and how many
            examples are bad; for another dtype, what is accepted.
    """
    if images.dtype == torch.uint8:
        return
    if not images.is_floating_point():
        raise ValueError(f"{where}: images must be uint8 (0..255) or floating point in [0, 1], got {images.dtype}")
    n = images.shape[0]
    flat = images.reshape(n, -1)
    bad_examples: list[Tensor] = []
    for start in range(0, n, CHUNK):
        low, high = torch.aminmax(flat[start : start + CHUNK], dim=1)  # (chunk,) each; NaN propagates
        rows = (~((low >= 0) & (high <= 1))).nonzero().flatten()  # NaN fails both comparisons, ±inf one
        if rows.numel():
            bad_examples.append(rows + start)
    if not bad_examples:
        return
    rows = torch.cat(bad_examples)
    first = int(rows[0])
    values = flat[first]
    wrong = values[~torch.isfinite(values) | (values < 0) | (values > 1)]
    value = float(wrong[0])
    kind = "NaN or infinite values" if not torch.isfinite(wrong).all() else "values outside [0, 1]"
    others = len(rows) - 1
    more = f"; {others} more {'example holds' if others == 1 else 'examples hold'} such values" if others else ""
    hint = " (images stored in 0..255 must be uint8, or divided by 255)" if kind != "NaN or infinite values" and float(wrong.max()) > 1.5 else ""
    raise ValueError(
        f"{where}: pixels must be finite and lie in [0, 1]; example {offset + first} holds {kind} "
        f"(e.g. {value}){more}{hint}"
    )
