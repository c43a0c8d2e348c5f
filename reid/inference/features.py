"""The images embed.py embeds (a folder tree or a CSV list), and how it resumes its features file.

The file's layout is `reid.retrieval.feature_files`, which alone writes and reads it. Rows keep the order
they were embedded in; a later run over a grown input appends rows (`merged`) and numbers new class
folders after the file's `classes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reid.data.image_files import IMAGE_EXTENSIONS, list_image_files, read_image_csv
from reid.errors import ConfigError, DataError
from reid.retrieval.feature_files import UNKNOWN, FeatureSet, read_features


@dataclass
class ImageList:
    """Images to embed: absolute paths, labels and camids (int64, -1 when unknown), and the class names of
    a folder input's labels."""

    paths: list[str]
    labels: np.ndarray
    camids: np.ndarray
    classes: list[str] = field(default_factory=list)

    def select(self, rows: list[int]) -> ImageList:
        """The images at `rows`, in that order."""
        return ImageList([self.paths[i] for i in rows], self.labels[rows], self.camids[rows], self.classes)


def list_input(source: str | Path, classes: list[str] | None = None, key: str = "input") -> ImageList:
    """The images of `source`: a folder (every image at any depth) or a CSV list (`path[,label][,camera]`).

    A folder whose images all sit in subfolders is read as one class per first-level subfolder: label k is
    the folder `classes[k]`, numbered in sorted order after the `classes` already known (an earlier run's).
    A folder with images directly inside has no labels. Raises `DataError` when there is no image.
    """
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        records = read_image_csv(source, require_label=False)
        return ImageList(
            [str(Path(r.path).resolve()) for r in records],
            np.array([UNKNOWN if r.label is None else r.label for r in records], dtype=np.int64),
            np.array([UNKNOWN if r.camid is None else r.camid for r in records], dtype=np.int64),
            list(classes or []),  # a file resumed from a CSV list keeps the classes it had
        )
    if not source.is_dir():
        raise ConfigError(
            f"{key}='{source}' is neither a folder nor a .csv file. Pass a folder of images (any depth) or a "
            f"CSV list with a `path` column, e.g. {key}=/path/to/images."
        )
    found = list_image_files(source)
    if not found:
        raise DataError(
            f"The folder '{source}' holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}, at any "
            f"depth). Pass a folder with images, e.g. {key}=/path/to/images."
        )
    folders = [
        p.relative_to(source).parts[0] if len(p.relative_to(source).parts) > 1 else None for p in found
    ]
    files = [path.resolve() for path in found]  # absolute: a later run from another folder finds them
    if None in folders:
        labels = np.full(len(files), UNKNOWN, dtype=np.int64)
        return ImageList([str(p) for p in files], labels, labels.copy(), list(classes or []))
    known = list(classes or [])
    known += sorted(set(folders) - set(known))
    number = {name: k for k, name in enumerate(known)}
    labels = np.array([number[name] for name in folders], dtype=np.int64)
    return ImageList([str(p) for p in files], labels, np.full(len(files), UNKNOWN, dtype=np.int64), known)


def read_resumable(path: str | Path, meta: dict[str, Any]) -> FeatureSet | None:
    """The features already in `path` (None when there is no such file), checked to come from the
    checkpoint `meta` describes ("sha256", "embed_dim"), so rows of two models never mix in one file.

    Raises `DataError` when `path` is not a feature file and `ConfigError` when another checkpoint (or none
    recorded) made it; the file is left untouched either way.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        earlier = read_features(path)
    except DataError as error:
        raise DataError(
            f"output='{path}' exists but is not a features file of embed.py: {error} It is left untouched: "
            "pass a new output=... (a .npz path that does not exist yet)."
        ) from None
    if earlier.meta.get("sha256") != meta["sha256"] or earlier.dim != meta["embed_dim"]:
        made_by = earlier.meta.get("checkpoint") if earlier.meta.get("sha256") else "none recorded"
        raise ConfigError(
            f"The features in '{path}' were made by another checkpoint ('{made_by}', "
            f"{earlier.dim}-dimensional) than ckpt_path='{meta['checkpoint']}' "
            f"({meta['embed_dim']}-dimensional), so new rows cannot be added to them. Pass a new output=... "
            "for this checkpoint's features."
        )
    return earlier


def merged(
    earlier: FeatureSet | None, images: ImageList, features: np.ndarray, meta: dict[str, Any]
) -> FeatureSet:
    """The features file after a run: `earlier`'s rows unchanged and in order, then `images`' rows with
    their `features` (N, D), the class names of `images` (which extend `earlier`'s) and this run's `meta`."""
    columns = [features.astype(np.float32), np.array(images.paths, dtype=str), images.labels, images.camids]
    if earlier is not None:
        before = [earlier.features, earlier.paths, earlier.labels, earlier.camids]
        columns = [np.concatenate(pair) for pair in zip(before, columns, strict=True)]
    return FeatureSet(*columns, meta, np.array(images.classes, dtype=str))
