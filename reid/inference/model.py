"""A checkpoint of train.py as a ready-to-use embedding model: `reid.load_model(ckpt)`.

Every backbone of this project takes input = uint8 pixels / `pixel_scale` (RGB, or grey when the card says
`channels == 1`) at `input_size` (H, W); whatever normalisation a backbone needs (the card's `mean` and
`std`) happens inside it. So `EmbeddingModel.embed` preprocesses raw images as: decode -> RGB (or grey by
`reid.data.image_files.luma`) -> resize to input_size (bilinear) -> / pixel_scale -> the backbone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from reid.data.image_files import decode_image, luma, rgb_array
from reid.errors import ConfigError
from reid.training import checkpoints

ImageInput = str | Path | Image.Image | Tensor
"""One raw image: a file path, a PIL image, or a uint8 tensor (C, H, W) with C = 1 or 3."""


class EmbeddingModel(nn.Module):
    """A trained backbone in eval mode: `model(x)` maps preprocessed images (B, C, H, W) in [0, 1] to
    embeddings (B, D); `model.embed(images)` takes raw images; `model.meta` says what the input must be.

    Args:
        backbone: the network, with its trained weights.
        meta: `embed_dim`, `input_size` (H, W), `channels`, `pixel_scale`, `mean`, `std` (applied inside the
            backbone), `model` (its config), `train_config`, `checkpoint` (the file) and `sha256` (of it).
    """

    def __init__(self, backbone: nn.Module, meta: dict[str, Any]):
        super().__init__()
        self.backbone = backbone
        self.meta = meta
        self.eval()

    def forward(self, images: Tensor) -> Tensor:
        """Preprocessed images (B, C, H, W) -> embeddings (B, D)."""
        return self.backbone(images)

    @property
    def device(self) -> torch.device:
        """Where the weights are (embed moves each batch there)."""
        return next(self.backbone.parameters()).device

    def embed(self, images: ImageInput | Iterable[ImageInput], batch_size: int = 64) -> Tensor:
        """Embeddings (N, D) float32 on the CPU of raw images, in their order, `batch_size` at a time.

        `images` is a list of paths, PIL images or uint8 tensors (C, H, W), or one uint8 tensor
        (N, C, H, W); each is preprocessed as the module docstring says. A file that cannot be decoded
        raises OSError naming it (embed.py skips and lists such files instead).
        """
        if isinstance(images, Tensor) and images.dim() == 4:
            images = list(images)
        elif isinstance(images, str | Path | Image.Image | Tensor):
            images = [images]
        items = list(images)
        batches = [
            self.embed_batch(torch.stack([self.pixels(item) for item in items[start : start + batch_size]]))
            for start in range(0, len(items), batch_size)
        ]
        return torch.cat(batches) if batches else torch.empty(0, self.meta["embed_dim"])

    def embed_batch(self, pixels: Tensor) -> Tensor:
        """Embeddings (B, D) float32 on the CPU of uint8 images (B, C, H, W) of the model's input size, run
        on the model's device without gradients, in bf16 autocast on a GPU."""
        device = self.device
        with (
            torch.inference_mode(),
            torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"),
        ):
            inputs = pixels.to(device, non_blocking=True).float() / self.meta["pixel_scale"]
            return self.backbone(inputs).float().cpu()

    def pixels(self, image: ImageInput) -> Tensor:
        """One raw image as the uint8 tensor (C, H, W) the model takes, before the division by pixel_scale."""
        height, width = self.meta["input_size"]
        if isinstance(image, str | Path):
            return to_model_pixels(decode_image(image, height, width), self.meta["channels"])
        if isinstance(image, Image.Image):
            return to_model_pixels(rgb_array(image, height, width), self.meta["channels"])
        if (
            isinstance(image, Tensor)
            and image.dtype == torch.uint8
            and image.dim() == 3
            and image.shape[0] in (1, 3)
        ):
            rgb = np.ascontiguousarray(image.cpu().expand(3, -1, -1).permute(1, 2, 0).numpy())
            return to_model_pixels(rgb_array(Image.fromarray(rgb), height, width), self.meta["channels"])
        raise TypeError(
            "embed() takes paths, PIL images or uint8 tensors (C, H, W) with C = 1 or 3, not "
            f"{describe(image)}."
        )


def to_model_pixels(rgb: np.ndarray, channels: int) -> Tensor:
    """RGB uint8 (H, W, 3) as the uint8 tensor (channels, H, W) a backbone takes: RGB, or grey (luma)."""
    if channels == 1:
        return torch.from_numpy(luma(rgb)).unsqueeze(0)
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def describe(value: Any) -> str:
    """A short description of a value for an error message (a tensor's dtype and shape)."""
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def file_sha256(path: str | Path) -> str:
    """The hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(ckpt: str | Path, device: str | torch.device | None = None) -> EmbeddingModel:
    """The backbone a train.py checkpoint holds, in eval mode on `device` (default: the GPU when there is
    one, else the CPU), as an `EmbeddingModel`. A file that is not a train.py checkpoint (no weights, no
    backbone, no model card) stops with a `ConfigError` naming it."""
    backbone, card = checkpoints.load_backbone(ckpt)
    if card["input_size"] is None or card["channels"] is None:
        raise ConfigError(
            f"The checkpoint '{ckpt}' does not record the input size and channels its backbone was trained "
            "on, so images cannot be prepared for it. Pass a checkpoint written by train.py."
        )
    meta = {
        "embed_dim": int(card["embed_dim"]),
        "input_size": tuple(card["input_size"]),
        "channels": int(card["channels"]),
        "pixel_scale": card["pixel_scale"],
        "mean": list(card["mean"]),
        "std": list(card["std"]),
        "model": card["model"],
        "train_config": card["train_config"],
        "checkpoint": str(ckpt),
        "sha256": file_sha256(ckpt),
    }
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return EmbeddingModel(backbone, meta).to(device)
