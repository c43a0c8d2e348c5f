"""LightningDataModules: each wires a dataset of `reid.data` to PK training batches and validation loaders."""

from reid.training.datamodules.in_memory import (
    DigitsDataModule,
    FashionMNISTDataModule,
    InMemoryDataModule,
    MNISTDataModule,
)
from reid.training.datamodules.mars import MarsDataModule

__all__ = [
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "InMemoryDataModule",
    "MarsDataModule",
    "MNISTDataModule",
]
