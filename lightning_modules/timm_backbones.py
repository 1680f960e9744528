"""``timm/<name>`` backbones: any model of PyTorch Image Models, behind an optional dependency.

``pip install -e ".[timm]"`` (or ``pip install timm``) enables ``backbone: timm/<name>`` for
every name of ``timm.list_models()`` (ConvNeXt, ViT, DeiT, Swin, ResNets, EfficientNets ...),
built untrained (``backbone_kwargs: {pretrained: true}`` downloads timm's weights; they expect
the normalisation they were trained with, which the datamodule's ``mean``/``std`` then has to
match). The input's channels are passed as ``in_chans``, and a model that takes an image size
(the ViT family) gets the input's (``img_size``); other ``backbone_kwargs`` go to
``timm.create_model`` (``{patch_size: 4, depth: 6}`` for a ViT on 32×32 images).

Grad-CAM (:mod:`attributions.grad_cam`) reads each backbone's ``gradcam_layer`` and
``gradcam_reshape``:

- ViT/DeiT (models with ``patch_embed``, ``blocks`` and prefix tokens): the input of the last
  block's attention, ``blocks.<last>.norm1`` (the layer pytorch-grad-cam recommends: after the
  last block the class token alone feeds the head, so the patch tokens' gradients there are 0).
  Its tokens (B, N, D) lose their prefix tokens (class, distillation, registers) and become a
  (B, D, h, w) grid of patches.
- Models built of ``stages`` (ConvNeXt, ...): the output of the last stage, a (B, C, h, w)
  feature map (permuted from (B, h, w, C) for channels-last models such as Swin).
- Others (ResNets, EfficientNets ...): Grad-CAM's default, the last ``nn.Conv2d``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

TIMM_PREFIX = "timm/"
TIMM_EXTRA = 'pip install -e ".[timm]"'


def import_timm(name: str) -> Any:
    """The ``timm`` module, or a ValueError naming the backbone and the extra that installs it."""
    try:
        return importlib.import_module("timm")
    except ImportError:
        pass
    # Raised outside the except block: the command line reports the innermost error of a chain.
    raise ValueError(
        f"backbone {name!r} needs the optional dependency timm, which is not installed: "
        f"run `{TIMM_EXTRA}` (or `pip install timm`)"
    )


def check_timm_name(name: str) -> None:
    """Raise a ValueError naming the extra or the allowed values unless ``timm/<model>`` exists."""
    timm = import_timm(name)
    model_name = name[len(TIMM_PREFIX) :]
    if not timm.is_model(model_name):
        raise ValueError(
            f"backbone {name!r}: timm has no model {model_name!r}; choose one of timm.list_models(), "
            "e.g. timm/convnext_atto, timm/vit_tiny_patch16_224, timm/deit_tiny_patch16_224"
        )


class TimmBackbone(nn.Module):
    """A timm model with the Grad-CAM layer and activation reshape of its family.

    Args:
        name: ``timm/<model name>``.
        in_channels: image channels (timm adapts the stem).
        num_classes: outputs.
        image_size: (H, W), given to models that take ``img_size``.
        **kwargs: ``timm.create_model`` options; ``pretrained`` defaults to False.
    """

    def __init__(
        self, name: str, in_channels: int, num_classes: int, image_size: Sequence[int], **kwargs: Any
    ) -> None:
        super().__init__()
        check_timm_name(name)
        timm = import_timm(name)
        model_name = name[len(TIMM_PREFIX) :]
        options = {"pretrained": False, "num_classes": num_classes, "in_chans": in_channels, **kwargs}
        try:
            self.model = timm.create_model(model_name, img_size=tuple(image_size), **options)
        except TypeError as error:
            if "img_size" not in str(error) or "img_size" in kwargs:
                raise
            self.model = timm.create_model(model_name, **options)  # a model without an image size
        self.gradcam_layer, self._tokens = self._grad_cam_target()

    def _grad_cam_target(self) -> tuple[str | None, str | None]:
        """(layer name relative to this module, how its output is laid out)."""
        model = self.model
        blocks = getattr(model, "blocks", None)
        if hasattr(model, "patch_embed") and isinstance(blocks, nn.Sequential) and len(blocks):
            if hasattr(blocks[-1], "norm1") and hasattr(model.patch_embed, "grid_size"):
                return f"model.blocks.{len(blocks) - 1}.norm1", "tokens"
        stages = getattr(model, "stages", None)
        if isinstance(stages, nn.Sequential) and len(stages):
            layout = "nhwc" if str(getattr(model, "output_fmt", "NCHW")).upper() == "NHWC" else "nchw"
            return f"model.stages.{len(stages) - 1}", layout
        return None, None

    def gradcam_reshape(self, activations: Tensor) -> Tensor:
        """The Grad-CAM layer's output as a (B, C, h, w) map (see the module doc)."""
        if self._tokens == "tokens":
            h, w = self.model.patch_embed.grid_size
            patches = activations[:, self.model.num_prefix_tokens :]  # (B, h·w, D)
            return patches.reshape(patches.shape[0], h, w, patches.shape[-1]).permute(0, 3, 1, 2)
        if self._tokens == "nhwc" and activations.dim() == 4:
            return activations.permute(0, 3, 1, 2)
        return activations

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)
