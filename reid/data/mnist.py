"""MNIST and Fashion-MNIST from the four official IDX files, downloaded by torchvision when online."""

from pathlib import Path

import torch
import torchvision

from reid.data.idx import read_idx
from reid.data.in_memory import ImageSplits, InMemoryDataModule
from reid.errors import DataError

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def find_idx_file(root: Path, name: str, torchvision_folder: str) -> Path | None:
    """The file `name` (.gz or not) directly in `root`, or where torchvision keeps it (root/<Folder>/raw)."""
    for folder in (root, root / torchvision_folder / "raw"):
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
    return None


class MNISTDataModule(InMemoryDataModule):
    """MNIST (LeCun et al.): 60,000 train and 10,000 test 28x28 digits.

    `root` is either a plain folder holding the four official `.gz` files under their official names,
    or torchvision's layout (`root/MNIST/raw/...`), which is downloaded when missing and `download` is
    true. All other arguments: see `InMemoryDataModule`.
    """

    torchvision_class = torchvision.datasets.MNIST
    display_name = "MNIST"

    def __init__(self, root: str = "data/mnist", download: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.root = Path(root)
        self.download = download

    def _files(self) -> dict[str, Path | None]:
        folder = self.torchvision_class.__name__
        return {key: find_idx_file(self.root, name, folder) for key, name in FILES.items()}

    def prepare_data(self) -> None:
        if all(self._files().values()):
            return
        reason = "dataset.download is false"
        if self.download:
            try:
                for train in (True, False):
                    self.torchvision_class(str(self.root), train=train, download=True)
                return
            except (OSError, RuntimeError) as error:
                reason = f"the download failed ({' '.join(str(error).split())})"
        raise DataError(
            f"{self.display_name} files not found in '{self.root.resolve()}' and {reason}. Either run "
            f"once with an internet connection (torchvision downloads them into '{self.root}'), or copy "
            f"the four official files {', '.join(n + '.gz' for n in FILES.values())} into a folder "
            "and pass it as dataset.root=PATH."
        )

    def load_splits(self) -> ImageSplits:
        self.prepare_data()
        arrays = {key: torch.from_numpy(read_idx(path).copy()) for key, path in self._files().items()}
        for split in ("train", "test"):
            images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            if images.ndim != 3 or len(images) != len(labels):
                raise DataError(
                    f"{self.display_name} {split} files in '{self.root}' do not match: images of shape "
                    f"{tuple(images.shape)} and {len(labels)} labels (expected (N, H, W) and N labels). "
                    "Replace them with the official files."
                )
        return ImageSplits(**{key: a.long() if "labels" in key else a for key, a in arrays.items()})


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (Xiao et al. 2017): the MNIST file format with 10 clothing classes."""

    torchvision_class = torchvision.datasets.FashionMNIST
    display_name = "Fashion-MNIST"
    class_names = tuple(torchvision.datasets.FashionMNIST.classes)

    def __init__(self, root: str = "data/fashion-mnist", download: bool = True, **kwargs):
        super().__init__(root=root, download=download, **kwargs)
