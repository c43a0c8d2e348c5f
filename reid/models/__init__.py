"""Embedding networks: images (B, C, H, W) -> embeddings (B, D); test-time augmentation of their input."""

from reid.models.convnet import ConvNet
from reid.models.lunet import LuNet
from reid.models.trinet import EmbeddingNet
from reid.models.tta import TTA_MODES, embed_with_tta

__all__ = ["TTA_MODES", "ConvNet", "EmbeddingNet", "LuNet", "embed_with_tta"]
