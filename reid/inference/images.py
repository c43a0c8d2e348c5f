"""Embedding image files in batches: workers decode while the model runs, and a file that cannot be
decoded is reported instead of stopping the run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from rich.progress import track
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from reid.data.image_files import decode_image
from reid.inference.model import EmbeddingModel, to_model_pixels


class ImageFiles(Dataset):
    """Image files decoded for a model: item i -> (i, uint8 (C, H, W), "") or (i, None, why it failed)."""

    def __init__(self, paths: Sequence[str], input_size: Sequence[int], channels: int):
        self.paths = list(paths)
        self.height, self.width = input_size
        self.channels = channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, Tensor | None, str]:
        try:
            rgb = decode_image(self.paths[index], self.height, self.width)
        except OSError as error:
            return index, None, " ".join(str(error).split()) or type(error).__name__
        return index, to_model_pixels(rgb, self.channels), ""


def collate_decoded(
    items: list[tuple[int, Tensor | None, str]],
) -> tuple[Tensor, Tensor, list[tuple[int, str]]]:
    """Decoded items as (indices (B,), uint8 images (B, C, H, W), [(index, why) of the undecodable])."""
    decoded = [(i, pixels) for i, pixels, _ in items if pixels is not None]
    failed = [(i, why) for i, pixels, why in items if pixels is None]
    if not decoded:
        return torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.uint8), failed
    indices, pixels = zip(*decoded, strict=True)
    return torch.tensor(indices), torch.stack(pixels), failed


@dataclass
class Embedded:
    """What `embed_files` made: `features` (N, D) float32 of `paths[i] for i in indices`, and the files
    that could not be decoded with the reason."""

    indices: list[int]
    features: Tensor
    skipped: list[tuple[str, str]]


def embed_files(
    model: EmbeddingModel, paths: Sequence[str], batch_size: int = 64, num_workers: int = 2
) -> Embedded:
    """Embeds image files in their order with a progress bar, `num_workers` processes decoding ahead."""
    loader = DataLoader(
        ImageFiles(paths, model.meta["input_size"], model.meta["channels"]),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_decoded,
        persistent_workers=False,
    )
    indices, features, skipped = [], [], []
    for batch_indices, pixels, failed in track(loader, f"Embedding {len(paths)} images"):
        if len(batch_indices):
            indices += batch_indices.tolist()
            features.append(model.embed_batch(pixels))
        skipped += [(paths[i], why) for i, why in failed]
    embed_dim = model.meta["embed_dim"]
    return Embedded(indices, torch.cat(features) if features else torch.empty(0, embed_dim), skipped)
