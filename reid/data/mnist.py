"""MNIST and Fashion-MNIST from the four official IDX files, downloaded by torchvision when online."""

from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision

from reid.data.idx import read_idx
from reid.data.images import ImageSplits
from reid.errors import DataError

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class IdxDataset:
    """A dataset in MNIST's file format: its name, torchvision's class (download, folder) and class names."""

    display_name: str
    torchvision_class: type
    class_names: tuple[str, ...]


MNIST = IdxDataset("MNIST", torchvision.datasets.MNIST, tuple(str(d) for d in range(10)))
FASHION_MNIST = IdxDataset(
    "Fashion-MNIST", torchvision.datasets.FashionMNIST, tuple(torchvision.datasets.FashionMNIST.classes)
)


def find_idx_file(root: Path, name: str, torchvision_folder: str) -> Path | None:
    """The file `name` (.gz or not) directly in `root`, or where torchvision keeps it (root/<Folder>/raw)."""
    for folder in (root, root / torchvision_folder / "raw"):
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
    return None


def idx_files(dataset: IdxDataset, root: Path) -> dict[str, Path | None]:
    """The four files of `dataset` under `root` (None for each one not found)."""
    folder = dataset.torchvision_class.__name__
    return {key: find_idx_file(root, name, folder) for key, name in FILES.items()}


def ensure_downloaded(dataset: IdxDataset, root: str | Path, download: bool) -> None:
    """Download the files into `root` with torchvision when they are missing and `download` is true;
    otherwise, or when the download fails (offline), a `DataError` that says where to put them."""
    root = Path(root)
    if all(idx_files(dataset, root).values()):
        return
    reason = "dataset.download is false"
    if download:
        try:
            for train in (True, False):
                dataset.torchvision_class(str(root), train=train, download=True)
            return
        except (OSError, RuntimeError) as error:
            reason = f"the download failed ({' '.join(str(error).split())})"
    raise DataError(
        f"{dataset.display_name} files not found in '{root.resolve()}' and {reason}. Either run "
        f"once with an internet connection (torchvision downloads them into '{root}'), or copy "
        f"the four official files {', '.join(n + '.gz' for n in FILES.values())} into a folder "
        "and pass it as dataset.root=PATH."
    )


def load_idx_splits(dataset: IdxDataset, root: str | Path, download: bool = True) -> ImageSplits:
    """The train (60,000) and test (10,000) 28x28 images and labels of `dataset` from `root`.

    `root` is either a plain folder holding the four official `.gz` files under their official names, or
    torchvision's layout (`root/MNIST/raw/...`), downloaded when missing and `download` is true.
    """
    root = Path(root)
    ensure_downloaded(dataset, root, download)
    arrays = {key: torch.from_numpy(read_idx(path).copy()) for key, path in idx_files(dataset, root).items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or len(images) != len(labels):
            raise DataError(
                f"{dataset.display_name} {split} files in '{root}' do not match: images of shape "
                f"{tuple(images.shape)} and {len(labels)} labels (expected (N, H, W) and N labels). "
                "Replace them with the official files."
            )
    return ImageSplits(**{key: a.long() if "labels" in key else a for key, a in arrays.items()})
