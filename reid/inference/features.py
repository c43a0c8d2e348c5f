"""The features file embed.py writes, and the image lists it embeds (a folder tree or a CSV list).

A `.npz` file (numpy, no pickles) with
    features (N, D) float32, paths (N,) str (absolute), labels (N,) int64 and camids (N,) int64 (-1: unknown),
    classes (K,) str (for a folder input: the folder name of label k; empty otherwise),
    meta: a JSON string {"checkpoint", "sha256" (of the checkpoint), "embed_dim"}.
Rows keep the order they were embedded in; a later run over a grown input appends rows (`merged`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reid.data.image_files import IMAGE_EXTENSIONS, list_image_files, read_image_csv
from reid.errors import ConfigError, DataError
from reid.files import atomic_file

UNKNOWN = -1
ARRAYS = ("features", "paths", "labels", "camids", "classes")


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


def list_input(source: str | Path, classes: list[str] | None = None) -> ImageList:
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
            f"input='{source}' is neither a folder nor a .csv file. Pass a folder of images (any depth) or a "
            "CSV list with a `path` column, e.g. input=/path/to/images."
        )
    found = list_image_files(source)
    if not found:
        raise DataError(
            f"The folder '{source}' holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}, at any "
            "depth). Pass a folder with images, e.g. input=/path/to/images."
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


def read_features(path: str | Path) -> dict[str, Any]:
    """An earlier features file: its arrays, and `meta` as a dict. Raises `DataError` if it is not one."""
    try:
        with np.load(path, allow_pickle=False) as data:
            content = {key: data[key] for key in data.files}
        missing = [key for key in (*ARRAYS, "meta") if key not in content]
        if missing:
            raise ValueError(f"no {', '.join(missing)}")
        content["meta"] = json.loads(str(content["meta"]))
    except (OSError, ValueError) as error:
        raise DataError(
            f"output='{path}' exists but is not a features file of embed.py ({error}). It is left untouched: "
            "pass a new output=... (a .npz path that does not exist yet)."
        ) from None
    return content


def check_resumable(path: str | Path, earlier: dict[str, Any], meta: dict[str, Any]) -> None:
    """Stops with `ConfigError` when the features in `path` were made by another checkpoint or have another
    dimension than the model's, so rows of two models never mix in one file."""
    dim = earlier["features"].shape[1] if earlier["features"].ndim == 2 else None
    made_by = earlier["meta"].get("checkpoint")
    if earlier["meta"].get("sha256") != meta["sha256"] or dim != meta["embed_dim"]:
        raise ConfigError(
            f"The features in '{path}' were made by another checkpoint ('{made_by}', "
            f"{dim}-dimensional) than ckpt_path='{meta['checkpoint']}' ({meta['embed_dim']}-dimensional), so "
            "new rows cannot be added to them. Pass a new output=... for this checkpoint's features."
        )


def merged(earlier: dict[str, Any] | None, images: ImageList, features: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays of a features file: `earlier`'s rows unchanged and in order, then `images`' rows."""
    new = {
        "features": features.astype(np.float32),
        "paths": np.array(images.paths, dtype=str),
        "labels": images.labels,
        "camids": images.camids,
    }
    if earlier is not None:
        new = {key: np.concatenate([earlier[key], value]) for key, value in new.items()}
    return new | {"classes": np.array(images.classes, dtype=str)}


def write_features(path: str | Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Writes (atomically) the features file `path` with `arrays` and `meta` as its JSON `meta` entry."""
    with atomic_file(path) as file:
        np.savez(file, **arrays, meta=np.array(json.dumps(meta)))
