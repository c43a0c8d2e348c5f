"""Feature files (`.npz`): the embeddings of a set of images, with what is known of each image.

The layout is defined, written and read here only, for the writer (`embed.py`, which also reads its file
back to resume it) and the reader (`search.py`): `features` (N, D) float32, `paths` (N,) str, `labels`
(N,) int64, `camids` (N,) int64 (-1 where unknown), `classes` (K,) str (the class folder of label k when
the labels come from class folders, empty otherwise) and `meta` (a JSON string: the checkpoint's path and
sha256, embed_dim). Only `features` is required: a file without `paths` names its items `<file>#<row>`,
one without `labels` or `camids` has them unknown and one without `classes` has none, so the
`features.npz` that `evaluate.py` writes for unlabelled data reads too.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reid.errors import DataError
from reid.files import atomic_file

FEATURES, PATHS, LABELS, CAMIDS, CLASSES, META = "features", "paths", "labels", "camids", "classes", "meta"
UNKNOWN = -1
"""The label or camera id of an item whose label or camera is not known."""


@dataclass(frozen=True)
class FeatureSet:
    """N embedded items: `features` (N, D) float32, `paths` (N,) str, `labels` and `camids` (N,) int64
    (UNKNOWN where not known), the writer's `meta`, and `classes` (K,) str, the name of label k (empty
    when the labels have no names)."""

    features: np.ndarray
    paths: np.ndarray
    labels: np.ndarray
    camids: np.ndarray
    meta: dict = field(default_factory=dict)
    classes: np.ndarray = field(default_factory=lambda: np.array([], dtype=str))

    @property
    def dim(self) -> int:
        return self.features.shape[1]

    @property
    def labelled(self) -> bool:
        """Whether every item has a label."""
        return bool(len(self.labels)) and bool(np.all(self.labels != UNKNOWN))


def read_features(path: str | Path) -> FeatureSet:
    """The feature file at `path`; a `DataError` naming the file and the key when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"The feature file '{path}' does not exist. Pass a .npz written by embed.py (or the features.npz "
            "of an evaluate.py run)."
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataError(f"'{path}' is not a readable .npz feature file ({error}).") from None
    if FEATURES not in arrays:
        raise DataError(
            f"'{path}' has no '{FEATURES}' array (it holds {', '.join(sorted(arrays)) or 'nothing'}). "
            f"A feature file holds '{FEATURES}' (N, D) and optionally '{PATHS}', '{LABELS}', '{CAMIDS}', "
            f"'{CLASSES}' and '{META}'."
        )
    features = arrays[FEATURES]
    if features.ndim != 2 or len(features) == 0 or not np.issubdtype(features.dtype, np.floating):
        raise DataError(
            f"'{path}': '{FEATURES}' must be a non-empty (N, D) float array, got shape {features.shape} "
            f"and dtype {features.dtype}."
        )
    if not np.isfinite(features).all():
        rows = np.flatnonzero(~np.isfinite(features).all(1))
        raise DataError(
            f"'{path}': {len(rows)} rows of '{FEATURES}' hold NaN or infinite values (first: row {rows[0]}); "
            "embed the images again with a checkpoint that trained without diverging."
        )
    n = len(features)
    paths = arrays.get(PATHS, np.array([f"{path.name}#{row}" for row in range(n)]))
    labels = _column(arrays, LABELS, n, path)
    camids = _column(arrays, CAMIDS, n, path)
    if len(paths) != n:
        raise DataError(f"'{path}': '{PATHS}' has {len(paths)} entries but '{FEATURES}' has {n} rows.")
    classes = arrays.get(CLASSES, np.array([], dtype=str))
    if classes.ndim != 1 or not (len(classes) == 0 or np.issubdtype(classes.dtype, np.str_)):
        raise DataError(
            f"'{path}': '{CLASSES}' must be a (K,) array of strings (the name of each label), got shape "
            f"{classes.shape} and dtype {classes.dtype}."
        )
    meta = json.loads(str(arrays[META])) if META in arrays else {}
    return FeatureSet(
        features.astype(np.float32, copy=False), paths.astype(str), labels, camids, meta, classes.astype(str)
    )


def write_features(path: str | Path, features: FeatureSet) -> None:
    """Writes `features` to `path` (atomically) in the layout `read_features` reads."""
    with atomic_file(path) as file:
        np.savez(
            file,
            **{
                FEATURES: np.asarray(features.features, dtype=np.float32),
                PATHS: np.asarray(features.paths, dtype=str),
                LABELS: np.asarray(features.labels, dtype=np.int64),
                CAMIDS: np.asarray(features.camids, dtype=np.int64),
                CLASSES: np.asarray(features.classes, dtype=str),
                META: np.array(json.dumps(features.meta)),
            },
        )


def check_same_dim(query: FeatureSet, query_name: str, gallery: FeatureSet, gallery_name: str) -> None:
    """Stops with a `DataError` naming both files when the query and gallery features differ in size."""
    if query.dim != gallery.dim:
        raise DataError(
            f"The query features ({query_name}) are {query.dim}-dimensional but the gallery features "
            f"({gallery_name}) are {gallery.dim}-dimensional: they come from different models. Embed both "
            "with the same checkpoint (embed.py ckpt_path=...), or pass the gallery file made with the "
            "query's model."
        )


def _column(arrays: dict[str, np.ndarray], key: str, n: int, path: Path) -> np.ndarray:
    """An (n,) int64 column of the file, all UNKNOWN when the file has none."""
    if key not in arrays:
        return np.full(n, UNKNOWN, dtype=np.int64)
    column = arrays[key]
    if column.shape != (n,) or not np.issubdtype(column.dtype, np.integer):
        raise DataError(
            f"'{path}': '{key}' must be ({n},) integers (one per row of '{FEATURES}', {UNKNOWN} where "
            f"unknown), got shape {column.shape} and dtype {column.dtype}."
        )
    return column.astype(np.int64, copy=False)
