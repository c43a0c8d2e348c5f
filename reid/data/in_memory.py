"""Datamodules for small labelled image sets held in memory (MNIST family, bundled digits).

Training draws PK batches (P classes x K images) with `PKSampler`; validation embeds the whole test
split (retrieval metrics) and a fixed reference subset of the train split (k-NN accuracy).
"""

from dataclasses import dataclass

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from reid.data.sharding import rank_and_world_size
from reid.samplers import PKSampler


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


class InMemoryDataModule(pl.LightningDataModule):
    """Base for datasets small enough to hold as tensors; subclasses implement `load_splits`.

    Args:
        P, K: classes per batch and images per class (batch size = P * K).
        batches_per_epoch: training batches per epoch (default: train images // (P * K)).
        knn_reference_size: train images used as the k-NN gallery at validation (None: all).
        eval_batch_size: batch size when embedding the validation sets.
        num_workers: DataLoader workers (0 is fastest for in-memory tensors).
        seed: seeds the PK sampler (together with the epoch).
    """

    class_names: tuple[str, ...] = tuple(str(d) for d in range(10))

    def __init__(
        self,
        P: int = 10,
        K: int = 12,
        batches_per_epoch: int | None = None,
        knn_reference_size: int | None = None,
        eval_batch_size: int = 1000,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        self.P, self.K = P, K
        self.batches_per_epoch = batches_per_epoch
        self.knn_reference_size = knn_reference_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.splits: ImageSplits | None = None

    def load_splits(self) -> ImageSplits:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            self.splits = self.load_splits()

    def _loader(self, dataset: Dataset, **kwargs) -> DataLoader:
        return DataLoader(
            dataset,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        labels = self.splits.train_labels
        sampler = PKSampler(
            labels,
            self.P,
            self.K,
            self.batches_per_epoch,
            seed=self.seed,
            **rank_and_world_size(self.trainer),
        )
        return self._loader(GreyImages(self.splits.train_images, labels), batch_sampler=sampler)

    def val_dataloader(self) -> list[DataLoader]:
        """[test split (retrieval queries and gallery), train reference subset (k-NN gallery)]."""
        s = self.splits
        ref = torch.from_numpy(evenly_spaced(len(s.train_labels), self.knn_reference_size))
        return [
            self._loader(GreyImages(s.test_images, s.test_labels), batch_size=self.eval_batch_size),
            self._loader(
                GreyImages(s.train_images[ref], s.train_labels[ref]), batch_size=self.eval_batch_size
            ),
        ]
