"""Unseen-class retrieval benchmarks read in their release layouts (docs/datasets.md).

CUB-200-2011 (`CUB_200_2011/`): `images.txt` (`<image id> <path under images/>`), `image_class_labels.txt`
(`<image id> <class id>`) and `classes.txt` (`<class id> <name>`); classes 1-100 train, 101-200 test (the
first half of the class ids, so a smaller generated tree splits the same way).
Stanford Online Products (`Stanford_Online_Products/`): `Ebay_train.txt` and `Ebay_test.txt`, each with
the header `image_id class_id super_class_id path` (path relative to the root); `class_id` is the label.
Every problem raises a `DataError` naming the file and line.
"""

from __future__ import annotations

from pathlib import Path

from reid.data.class_splits import ClassSplits, images_of, split_by_class
from reid.data.image_files import ImageRecord
from reid.errors import DataError

CUB_FOLDER, CUB_FILES = "CUB_200_2011", ("images.txt", "image_class_labels.txt", "classes.txt")
SOP_FOLDER, SOP_FILES = "Stanford_Online_Products", ("Ebay_train.txt", "Ebay_test.txt")
SOP_HEADER = ["image_id", "class_id", "super_class_id", "path"]


def release_folder(root: str | Path, folder: str, marker: str) -> Path:
    """`root` itself when it holds `marker`, else `root/folder` when that exists (the folder holding it)."""
    root = Path(root).expanduser()
    return root / folder if not (root / marker).exists() and (root / folder).is_dir() else root


def check_files(root: Path, names: tuple[str, ...], dataset: str, override: str) -> None:
    """Fail with one message listing every missing file of a release."""
    missing = [name for name in names if not (root / name).is_file()]
    if missing:
        raise DataError(
            f"The {dataset} folder {root} lacks {', '.join(missing)}. Point the dataset at the unpacked "
            f"release, e.g. {override}."
        )


def read_table(path: Path, columns: int, header: list[str] | None = None) -> list[tuple[int, list[str]]]:
    """(line number, fields) of each non-empty line of a whitespace-separated text file with `columns`
    fields a line (the last may hold spaces), the first `columns - 1` of them integers."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if header is not None:
        if not lines or lines[0].split() != header:
            raise DataError(f"{path}, line 1: expected the header {' '.join(header)}.")
        lines[0] = ""
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split(maxsplit=columns - 1)
        if len(fields) != columns or not all(f.isdigit() for f in fields[: columns - 1]):
            raise DataError(
                f"{path}, line {number}: {line!r} is not {columns} fields (integers, then a name or path); "
                "use the file that came with the release."
            )
        rows.append((number, fields))
    if not rows:
        raise DataError(f"{path} lists nothing; use the file that came with the release.")
    return rows


def check_images_exist(records: list[ImageRecord], listing: Path) -> None:
    """Fail naming the first listed image missing on disk, with how many are missing."""
    missing = [r.path for r in records if not Path(r.path).is_file()]
    if missing:
        raise DataError(
            f"{len(missing):,} images listed in {listing} are missing on disk, e.g. {missing[0]}. "
            "Re-extract the release's images."
        )


def load_cub200(root: str | Path) -> ClassSplits:
    """CUB-200-2011 at `root` (the `CUB_200_2011` folder or the one holding it)."""
    root = release_folder(root, CUB_FOLDER, CUB_FILES[0])
    check_files(root, CUB_FILES, "CUB-200-2011", f"dataset.root=/path/to/{CUB_FOLDER}")
    images_txt, labels_txt, classes_txt = (root / name for name in CUB_FILES)
    paths = {int(i): (line, p) for line, (i, p) in read_table(images_txt, 2)}
    names = {int(c): name for _, (c, name) in read_table(classes_txt, 2)}
    labels = {}
    for line, (i, c) in read_table(labels_txt, 2):
        if int(i) not in paths or int(c) not in names:
            unknown = f"image id {i} (not in images.txt)" if int(i) not in paths else f"class id {c}"
            raise DataError(f"{labels_txt}, line {line}: {unknown} is unknown; use the release's files.")
        labels[int(i)] = int(c)
    unlabelled = sorted(set(paths) - set(labels))
    if unlabelled:
        line = paths[unlabelled[0]][0]
        raise DataError(
            f"{images_txt}, line {line}: image id {unlabelled[0]} has no class in {labels_txt.name}; "
            "use the release's files."
        )
    order = sorted(names)
    label_of = {c: k for k, c in enumerate(order)}  # class ids 1..200 -> labels 0..199
    records = [
        ImageRecord(str(root / "images" / p), label_of[labels[i]]) for i, (_, p) in sorted(paths.items())
    ]
    check_images_exist(records, images_txt)
    return split_by_class(records, None, root, "CUB-200-2011", tuple(names[c] for c in order))


def load_sop(root: str | Path) -> ClassSplits:
    """Stanford Online Products at `root` (the `Stanford_Online_Products` folder or the one holding it)."""
    root = release_folder(root, SOP_FOLDER, SOP_FILES[0])
    check_files(root, SOP_FILES, "Stanford Online Products", f"dataset.root=/path/to/{SOP_FOLDER}")
    splits = {}
    for split, name in zip(("train", "test"), SOP_FILES, strict=True):
        rows = read_table(root / name, 4, SOP_HEADER)
        splits[split] = [
            ImageRecord(str(root / fields[3]), int(fields[1]) - 1, None, split) for _, fields in rows
        ]
        check_images_exist(splits[split], root / name)
    shared = {r.label for r in splits["train"]} & {r.label for r in splits["test"]}
    if shared:
        raise DataError(
            f"{root / SOP_FILES[1]} lists class_id {min(shared) + 1}, which {SOP_FILES[0]} lists too; the "
            "test classes must be unseen in training. Use the release's files."
        )
    return ClassSplits(
        train=images_of(splits["train"]),
        test=images_of(splits["test"]),
        root=root,
        dataset="Stanford Online Products",
        notes=("class_id is the label; Ebay_train.txt trains, Ebay_test.txt tests",),
    )
