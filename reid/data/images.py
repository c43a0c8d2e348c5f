"""Small labelled image sets held in memory as uint8 tensors (MNIST family, bundled digits)."""

from dataclasses import dataclass

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset


@dataclass(frozen=True)
class ImageSplits:
    """uint8 images (N, H, W) and int64 labels (N,) of a train and a test split."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor


class GreyImages(Dataset):
    """uint8 images (N, H, W) served as float (1, H, W) in [0, 1] with their label."""

    def __init__(self, images: Tensor, labels: Tensor):
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index].unsqueeze(0).float().div_(255.0), self.labels[index]


def evenly_spaced(n_total: int, n_pick: int | None) -> np.ndarray:
    """`n_pick` indices spread evenly over range(n_total) (all of them when n_pick is None or larger)."""
    if n_pick is None or n_pick >= n_total:
        return np.arange(n_total)
    return np.linspace(0, n_total - 1, n_pick).round().astype(np.int64)
