"""TriNet (Hermans, Beyer & Leibe 2017) and its kin: an ImageNet network with an embedding head.

images (B, 3, H, W) in [0, 1] -> normalised as the ImageNet weights expect -> the network without its
classifier, globally average-pooled -> features (B, F) -> linear F -> head_dim, batch norm, ReLU -> linear
head_dim -> embed_dim -> embeddings (B, embed_dim). The paper's TriNet is ResNet-50 (F = 2048) with
head_dim 1024 and 128 dimensions, trained on 256 x 128 crops from ImageNet weights.

The normalisation is part of the network (buffers `mean` and `std`, saved with the weights), as it is of
every backbone here: a backbone takes pixels / 255, so embedding, export and evaluation feed every one of
them alike and never normalise twice. The model card records it (`input_mean`, `input_std`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from reid.errors import ConfigError
from reid.models.trunks import build_trunk
from reid.models.weights import load_weights


class EmbeddingNet(nn.Module):
    """A torchvision or timm network by name, its classifier replaced by TriNet's head.

    Args:
        name: the network's name in its library: resnet50, resnet18, efficientnet_b0 (torchvision);
            resnet50d or resnet50d.a1_in1k (timm).
        embed_dim: D, the embedding's dimensions.
        source: "torchvision" or "timm" (an optional extra: pip install -e ".[timm]").
        head_dim: the hidden layer's width (TriNet's 1024).
        weights: a local file of the network's ImageNet weights (torchvision's or timm's, .pth, .pt or
            .safetensors); the classifier's tensors in it are left out.
        pretrained: start from the library's ImageNet weights, downloaded once into its cache.
        in_channels: 3; ImageNet networks take RGB images.
        input_size: the training images' (H, W), which configs may give every backbone
            (experiment=mars_smoke does); unused, as global pooling takes any size.
    """

    def __init__(
        self,
        name: str,
        embed_dim: int = 128,
        source: str = "torchvision",
        head_dim: int = 1024,
        weights: str | Path | None = None,
        pretrained: bool = False,
        in_channels: int = 3,
        input_size: int | Sequence[int] | None = None,
    ):
        super().__init__()
        if embed_dim < 1 or head_dim < 1:
            raise ConfigError(f"embed_dim and model.head_dim must be >= 1, got {embed_dim} and {head_dim}.")
        if in_channels != 3:
            raise ConfigError(
                f"model.in_channels={in_channels}: ImageNet networks take RGB images (3 channels). Train "
                "them on a 3-channel dataset (e.g. dataset=mars), or use model=convnet for grey images."
            )
        if weights is not None and pretrained:
            raise ConfigError(
                f"model.weights='{weights}' and model.pretrained=true both give the ImageNet weights: "
                "keep one (model.pretrained=false to use the file)."
            )
        trunk = build_trunk(name, source, pretrained)
        if weights is not None:
            load_weights(trunk.network, weights, trunk.classifier, trunk.description)
        self.description = trunk.description
        self.trunk = trunk.network
        self.head = nn.Sequential(
            nn.Linear(trunk.features, head_dim, bias=False),
            nn.BatchNorm1d(head_dim),
            nn.ReLU(inplace=True),
            nn.Linear(head_dim, embed_dim),
        )
        self.register_buffer("mean", torch.tensor(trunk.mean).view(3, 1, 1))
        self.register_buffer("std", torch.tensor(trunk.std).view(3, 1, 1))

    @property
    def input_mean(self) -> list[float]:
        """The per-channel mean this network subtracts from its input in [0, 1] (the model card's), to
        float32's precision (0.485, not 0.48500001430511475)."""
        return [round(value, 6) for value in self.mean.flatten().tolist()]

    @property
    def input_std(self) -> list[float]:
        """The per-channel scale this network divides its centred input by (the model card's)."""
        return [round(value, 6) for value in self.std.flatten().tolist()]

    def forward(self, images: Tensor) -> Tensor:
        """images (B, 3, H, W) in [0, 1] -> embeddings (B, embed_dim)."""
        if images.shape[1] != 3:
            raise ConfigError(
                f"{self.description} takes RGB images (3 channels) but was given {images.shape[1]}-channel "
                "ones. Train ImageNet networks on a 3-channel dataset (e.g. dataset=mars or "
                "experiment=mars_smoke), or use model=convnet for grey images."
            )
        return self.head(self.trunk((images - self.mean) / self.std))
