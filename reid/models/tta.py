"""Test-time augmentation: one embedding per image from several views of it, averaged.

Used alike by validation during training (`EmbeddingModule.validation_step`) and by `evaluate.py`, so the
numbers of both are comparable. Modes (`evaluator.tta`):

- None: the image as it is.
- "flip": the mean of the image's embedding and its horizontal mirror's.
- "flip_crops": Hermans et al.'s 10 views: the image resized to `CROP_SCALE` (1.125) times its size, its
  4 corner crops and centre crop of the input size, each also mirrored; the mean of the 10 embeddings.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from reid.errors import ConfigError

TTA_MODES = (None, "flip", "flip_crops")
CROP_SCALE = 1.125


def check_tta(mode: str | None) -> str | None:
    """`mode` itself when it is one of `TTA_MODES`; else a `ConfigError` naming `evaluator.tta`."""
    if mode not in TTA_MODES:
        raise ConfigError(
            f"evaluator.tta={mode!r} is not a test-time augmentation: use evaluator.tta=null (none), "
            "evaluator.tta=flip or evaluator.tta=flip_crops."
        )
    return mode


def five_crops(images: Tensor, scale: float = CROP_SCALE) -> list[Tensor]:
    """Images (B, C, H, W) resized bilinearly to round(scale x (H, W)), then cropped back to (H, W) at the
    four corners (top-left, top-right, bottom-left, bottom-right) and the centre: 5 tensors (B, C, H, W)."""
    height, width = images.shape[-2:]
    big_h, big_w = round(height * scale), round(width * scale)
    big = F.interpolate(images, size=(big_h, big_w), mode="bilinear", align_corners=False)
    bottom, right = big_h - height, big_w - width
    tops_lefts = [(0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2)]
    return [big[..., top : top + height, left : left + width] for top, left in tops_lefts]


def embed_with_tta(backbone: Callable[[Tensor], Tensor], images: Tensor, mode: str | None) -> Tensor:
    """Embeddings (B, D) of images (B, C, H, W) in [0, 1], averaged over the views of `mode`.

    All views go through the backbone in one batch (B x views), so batch norm in eval mode and the
    average see exactly what one image at a time would.
    """
    check_tta(mode)
    if mode is None:
        return backbone(images)
    views = [images] if mode == "flip" else five_crops(images)
    views = views + [view.flip(-1) for view in views]
    embeddings = backbone(torch.cat(views))
    return embeddings.unflatten(0, (len(views), len(images))).mean(0)
