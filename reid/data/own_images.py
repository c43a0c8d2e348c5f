"""People's own labelled images: a class-per-folder tree or a CSV list, split for training and testing.

Folder layouts (`split`):
    classes   root/<class>/*.jpg              classes sorted by name: the first half train, the rest test
    folders   root/train/<class>/, root/test/<class>/                      (unseen classes)
              root/train/<class>/, root/query/<class>/, root/gallery/<class>/   (re-ID style retrieval)
    auto      folders when root/train/ exists, else classes
A class name is the same class in every split folder. Images are `.jpg .jpeg .png .bmp .webp` at any
depth under a class folder; other files are ignored and class folders without images skipped with a warning.

CSV lists (`reid.data.image_files.read_image_csv`): `path,label[,camera][,split]`; with a split column
every row names its split (train + test, or train + query + gallery), without one the labels are split as
the `classes` layout splits folders.
"""

from __future__ import annotations

import logging
from pathlib import Path

from reid.data.class_splits import ClassSplits, split_by_class, splits_from_records
from reid.data.image_files import IMAGE_EXTENSIONS, ImageRecord, list_image_files, read_image_csv
from reid.data.mars import MarsSplits
from reid.errors import ConfigError, DataError

log = logging.getLogger(__name__)

FOLDER_SPLITS = ("auto", "classes", "folders")
IMAGE_KINDS = ", ".join(sorted(IMAGE_EXTENSIONS))


def load_image_folder(
    root: str | Path | None, split: str = "auto", train_classes: int | None = None
) -> ClassSplits | MarsSplits:
    """The images of a class-per-folder tree, split as `split` says (see the module)."""
    if split not in FOLDER_SPLITS:
        raise ConfigError(
            f"dataset.split={split!r} is not a folder split; use one of {', '.join(FOLDER_SPLITS)}."
        )
    if root is None:
        raise ConfigError(
            "dataset=image_folder needs the folder of your images: add dataset.root=/path/to/images (a "
            "folder of class folders, or of train/ and test/, or of train/, query/ and gallery/)."
        )
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"The image folder {root} does not exist; set dataset.root=/path/to/images.")
    if split == "classes" or (split == "auto" and not (root / "train").is_dir()):
        names, folders = _name_classes([root])
        records = _records(folders[root], names, None)
        return split_by_class(records, train_classes, root, "image folder", tuple(names))
    present = [name for name in ("train", "test", "query", "gallery") if (root / name).is_dir()]
    if set(present) not in ({"train", "test"}, {"train", "query", "gallery"}):
        raise DataError(
            f"The image folder {root} has the split folders {', '.join(present) or 'none'}; expected train/ "
            "and test/ (unseen classes) or train/, query/ and gallery/ (re-ID style), each holding class "
            "folders. For one folder of class folders, set dataset.split=classes."
        )
    names, folders = _name_classes([root / name for name in present])
    records = [r for name in present for r in _records(folders[root / name], names, name)]
    return splits_from_records(records, root, "image folder", tuple(names))


def _name_classes(split_folders: list[Path]) -> tuple[dict[str, int], dict[Path, dict[str, list[Path]]]]:
    """Labels of the class names found in any of `split_folders` (sorted names -> 0..C-1), and the images
    of each split folder's classes; class folders without images are skipped with a warning."""
    folders = {}
    for split_folder in split_folders:
        classes = {}
        for folder in sorted(p for p in split_folder.iterdir() if p.is_dir()):
            images = list_image_files(folder)
            if images:
                classes[folder.name] = images
            else:
                log.warning("Skipping the class folder %s: it holds no %s files.", folder, IMAGE_KINDS)
        if not classes:
            raise DataError(
                f"{split_folder} holds no class folders with images; expected one folder per class holding "
                f"{IMAGE_KINDS} files."
            )
        folders[split_folder] = classes
    names = sorted({name for classes in folders.values() for name in classes})
    return {name: label for label, name in enumerate(names)}, folders


def _records(classes: dict[str, list[Path]], names: dict[str, int], split: str | None) -> list[ImageRecord]:
    return [ImageRecord(str(p), names[name], None, split) for name, paths in classes.items() for p in paths]


def load_image_csv(path: str | Path | None, train_classes: int | None = None) -> ClassSplits | MarsSplits:
    """The images of a CSV list (see the module); problems raise a `DataError` naming the line."""
    if path is None:
        raise ConfigError("dataset=csv needs the list of your images: add dataset.path=/path/to/list.csv.")
    path = Path(path).expanduser()
    records = read_image_csv(path)
    with_split = [r.split is not None for r in records]
    if any(with_split) and not all(with_split):
        row = with_split.index(False) if with_split[0] else with_split.index(True)
        raise DataError(
            f"{path}, line {row + 2}: {'no' if with_split[0] else 'a'} split given, unlike line 2; either "
            "every row names its split (train, test, query, gallery) or none does."
        )
    if not any(with_split):
        return split_by_class(records, train_classes, path, "CSV list")
    return splits_from_records(records, path, "CSV list")
