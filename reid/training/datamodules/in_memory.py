"""Datamodules for small labelled image sets held in memory: MNIST, Fashion-MNIST, the bundled digits.

Training draws PK batches (P classes x K images) with `PKSampler`; validation embeds the whole test
split (retrieval metrics) and a fixed reference subset of the train split (k-NN accuracy).
"""

import torch
from torch.utils.data import DataLoader, Dataset

from reid.data.digits import load_digits_splits
from reid.data.images import GreyImages, ImageSplits, evenly_spaced
from reid.data.mnist import FASHION_MNIST, MNIST, IdxDataset, ensure_downloaded, load_idx_splits
from reid.training.datamodules.resume import ResumablePKDataModule


class InMemoryDataModule(ResumablePKDataModule):
    """Base for datasets small enough to hold as tensors; subclasses implement `load_splits`.

    Args:
        P, K: classes per batch and images per class (batch size = P * K).
        batches_per_epoch: training batches per epoch (default: train images // (P * K)).
        knn_reference_size: train images used as the k-NN gallery at validation (None: all).
        eval_batch_size: batch size when embedding the validation sets.
        num_workers: DataLoader workers (0 is fastest for in-memory tensors).
        seed: seeds the PK sampler (together with the epoch).

    A checkpoint records where the PK batches stand, so a resumed run continues mid-epoch exactly
    (`ResumablePKDataModule`).
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
        return self._loader(GreyImages(self.splits.train_images, labels), **self.pk_loader_args(labels))

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


class MNISTDataModule(InMemoryDataModule):
    """MNIST (LeCun et al.): 60,000 train and 10,000 test 28x28 digits.

    `root` is either a plain folder holding the four official `.gz` files under their official names,
    or torchvision's layout (`root/MNIST/raw/...`), which is downloaded when missing and `download` is
    true. All other arguments: see `InMemoryDataModule`.
    """

    dataset: IdxDataset = MNIST

    def __init__(self, root: str = "data/mnist", download: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.root = root
        self.download = download
        self.class_names = self.dataset.class_names

    def prepare_data(self) -> None:
        ensure_downloaded(self.dataset, self.root, self.download)

    def load_splits(self) -> ImageSplits:
        return load_idx_splits(self.dataset, self.root, self.download)


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (Xiao et al. 2017): the MNIST file format with 10 clothing classes."""

    dataset = FASHION_MNIST

    def __init__(self, root: str = "data/fashion-mnist", download: bool = True, **kwargs):
        super().__init__(root=root, download=download, **kwargs)


class DigitsDataModule(InMemoryDataModule):
    """scikit-learn's 1,797 bundled digits at 28x28 (`reid.data.digits`): offline, 1,257 train / 540 test.

    Args:
        test_fraction: share of each class held out as the test split (fixed, stratified).
        size: image side after upsampling the 8x8 originals.
        **kwargs: see `InMemoryDataModule`.
    """

    def __init__(self, test_fraction: float = 0.3, size: int = 28, **kwargs):
        super().__init__(**kwargs)
        self.test_fraction = test_fraction
        self.size = size

    def load_splits(self) -> ImageSplits:
        return load_digits_splits(self.test_fraction, self.size)
