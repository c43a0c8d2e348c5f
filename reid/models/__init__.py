"""Embedding networks: images (B, C, H, W) -> embeddings (B, D)."""

from reid.models.convnet import ConvNet
from reid.models.lunet import LuNet

__all__ = ["ConvNet", "LuNet"]
