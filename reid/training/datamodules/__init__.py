"""LightningDataModules: each wires a dataset of `reid.data` to PK training batches and validation loaders."""

from reid.training.datamodules.datasets import (
    CsvDataModule,
    Cub200DataModule,
    ImageFolderDataModule,
    Market1501DataModule,
    SopDataModule,
)
from reid.training.datamodules.images import ImagesDataModule
from reid.training.datamodules.in_memory import (
    DigitsDataModule,
    FashionMNISTDataModule,
    InMemoryDataModule,
    MNISTDataModule,
)
from reid.training.datamodules.mars import MarsDataModule

__all__ = [
    "CsvDataModule",
    "Cub200DataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageFolderDataModule",
    "ImagesDataModule",
    "InMemoryDataModule",
    "Market1501DataModule",
    "MarsDataModule",
    "MNISTDataModule",
    "SopDataModule",
]
