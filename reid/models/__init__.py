"""Embedding networks: images (B, C, H, W) -> embeddings (B, D)."""

from reid.models.convnet import ConvNet
from reid.models.lunet import LuNet
from reid.models.trinet import EmbeddingNet

__all__ = ["ConvNet", "EmbeddingNet", "LuNet"]
