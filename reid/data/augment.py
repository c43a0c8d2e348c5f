"""Per-frame training augmentation that costs microseconds: a random crop by slicing and a random flip.

torchvision's v2 transforms spend ~190 us a frame on dispatch alone, more than a cached frame takes to
read; these do the same two operations on a (C, H, W) tensor directly. Randomness comes from Python's
`random` until `seed` gives the transform a stream of its own: `MarsFrameDataset` does so for every batch
of a `PKSampler` (its `SeededBatch.seed`), so a batch's crops and flips do not depend on the DataLoader
worker that builds it, nor on the batches that worker built before, and a resumed run draws the same.
"""

from __future__ import annotations

import random

import torch


class RandomCropFlip:
    """Random (height, width) crop of a larger (C, H, W) image (no crop if same size), then a flip with
    probability 0.5 if `flip`."""

    def __init__(self, height: int, width: int, flip: bool):
        self.height, self.width, self.flip = height, width, flip
        self.rng = random  # the module's functions (Python's global stream), until `seed`

    def seed(self, value: int) -> None:
        """Draw from now on from a stream of its own seeded with `value`."""
        self.rng = random.Random(value)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        top = self.rng.randint(0, image.shape[-2] - self.height)
        left = self.rng.randint(0, image.shape[-1] - self.width)
        image = image[..., top : top + self.height, left : left + self.width]
        return image.flip(-1) if self.flip and self.rng.random() < 0.5 else image
