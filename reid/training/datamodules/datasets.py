"""Datamodules of still-image datasets: Market-1501, own class folders and CSV lists, CUB-200-2011 and
Stanford Online Products. Each only parses its dataset; `ImagesDataModule` serves it (query/gallery or
unseen classes, see `reid.training.datamodules.images`)."""

from __future__ import annotations

from reid.data.class_splits import ClassSplits
from reid.data.market1501 import load_market1501
from reid.data.mars import MarsSplits
from reid.data.own_images import load_image_csv, load_image_folder
from reid.data.retrieval_benchmarks import load_cub200, load_sop
from reid.training.datamodules.images import ImagesDataModule


class Market1501DataModule(ImagesDataModule):
    """Market-1501 at `root` (`Market-1501-v15.09.15/` or the folder holding it), ranked by `protocol`:
    "official" (the release's MATLAB evaluation, trapezoid AP) or "torchreid" (step AP); the same lists.
    **kwargs: see `ImagesDataModule`."""

    def __init__(self, root: str, protocol: str = "official", **kwargs):
        super().__init__(**kwargs)
        self.root, self.protocol = root, protocol

    def load_splits(self) -> MarsSplits:
        return load_market1501(self.root, self.protocol)


class ImageFolderDataModule(ImagesDataModule):
    """A class-per-folder tree at `root`, split by `split` ("auto", "classes" or "folders", see
    `reid.data.own_images`); `train_classes` classes train under "classes" (None: half).
    Query/gallery layouts are ranked by step AP (protocol "torchreid"). **kwargs: see `ImagesDataModule`."""

    protocol = "torchreid"

    def __init__(
        self, root: str | None = None, split: str = "auto", train_classes: int | None = None, **kwargs
    ):
        super().__init__(**kwargs)
        self.root, self.split, self.train_classes = root, split, train_classes

    def load_splits(self) -> MarsSplits | ClassSplits:
        return load_image_folder(self.root, self.split, self.train_classes)


class CsvDataModule(ImagesDataModule):
    """The images a CSV list at `path` names (`path,label[,camera][,split]`, see `reid.data.own_images`);
    without a split column, the first `train_classes` labels train (None: half). **kwargs: see
    `ImagesDataModule`."""

    protocol = "torchreid"

    def __init__(self, path: str | None = None, train_classes: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.path, self.train_classes = path, train_classes

    def load_splits(self) -> MarsSplits | ClassSplits:
        return load_image_csv(self.path, self.train_classes)


class Cub200DataModule(ImagesDataModule):
    """CUB-200-2011 at `root`: classes 1-100 train, 101-200 test. **kwargs: see `ImagesDataModule`."""

    def __init__(self, root: str, **kwargs):
        super().__init__(**kwargs)
        self.root = root

    def load_splits(self) -> ClassSplits:
        return load_cub200(self.root)


class SopDataModule(ImagesDataModule):
    """Stanford Online Products at `root`: Ebay_train.txt trains, Ebay_test.txt tests. **kwargs: see
    `ImagesDataModule`."""

    def __init__(self, root: str, **kwargs):
        super().__init__(**kwargs)
        self.root = root

    def load_splits(self) -> ClassSplits:
        return load_sop(self.root)
