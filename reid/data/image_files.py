"""People's own images: finding image files in a folder tree, reading `path,label[,camera][,split]` CSV
lists, and decoding any image format to RGB at a given size.

Every image, whatever its format and mode (grey, RGBA, palette, CMYK), becomes RGB uint8 (H, W, 3);
JPEGs take the fast DCT-scaled path of `reid.data.jpeg.decode_frame`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from reid.data.jpeg import decode_frame
from reid.errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
SPLITS = ("train", "test", "query", "gallery")
CSV_COLUMNS = ("path", "label", "camera", "split")


@dataclass(frozen=True)
class ImageRecord:
    """One image: its path, its label (None when unknown), camera and split (None when not given)."""

    path: str
    label: int | None = None
    camid: int | None = None
    split: str | None = None


def is_image_file(path: str | Path) -> bool:
    """Whether `path` names an image this project reads, by its extension (any case)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_image_files(folder: str | Path) -> list[Path]:
    """Every image file under `folder`, at any depth, sorted by path; other files are ignored."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and is_image_file(p))


def decode_image(path: str | Path, height: int, width: int) -> np.ndarray:
    """The image at `path` as RGB uint8 (height, width, 3), resized bilinearly; OSError if unreadable."""
    path = str(path)
    if Path(path).suffix.lower() in {".jpg", ".jpeg"}:
        return decode_frame(path, height, width)
    try:
        with Image.open(path) as img:
            return rgb_array(img, height, width)
    except (UnidentifiedImageError, ValueError) as error:
        raise OSError(f"{path}: {error}") from None


def rgb_array(image: Image.Image, height: int, width: int) -> np.ndarray:
    """A PIL image of any mode as RGB uint8 (height, width, 3), resized bilinearly (transparency dropped)."""
    rgb = image.convert("RGBA").convert("RGB") if image.mode in {"P", "PA", "LA"} else image.convert("RGB")
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8).copy()


def luma(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (..., 3) as grey uint8 (...) by the ITU-R 601-2 luma rule, bit for bit as PIL's "L" mode
    computes it: L = R * 299/1000 + G * 587/1000 + B * 114/1000, in 16-bit fixed point, rounded."""
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def read_image_csv(path: str | Path, require_label: bool = True) -> list[ImageRecord]:
    """The rows of a CSV list with a header naming `path` and `label`, and optionally `camera` and `split`.

    Relative paths resolve from the CSV's folder. Labels are kept as integers when every label is one;
    otherwise every distinct label text is numbered 0, 1, ... in order of first appearance (so "3" and
    "cat" never share a number). Cameras must be integers.
    A missing file, an empty label (when `require_label`), a camera that is not an integer or a split
    outside `SPLITS` raises a `DataError` naming the CSV and its line number.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"The CSV list '{path}' does not exist. Pass a CSV file with a `path,label` header.")
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        columns = [c.strip() for c in reader.fieldnames or []]
        if "path" not in columns or (require_label and "label" not in columns):
            raise DataError(
                f"{path}, line 1: the header is {','.join(columns) or '(empty)'}; it must name the columns "
                f"path{',label' if require_label else ''} (and optionally camera, split)."
            )
        reader.fieldnames = columns
        rows = [_record(row, path, reader.line_num, require_label) for row in reader]
    if not rows:
        raise DataError(f"The CSV list '{path}' has a header but no rows.")
    labels = _numbered([text for _, text in rows])
    return [replace(record, label=label) for (record, _), label in zip(rows, labels, strict=True)]


def _record(row: dict, csv_path: Path, line: int, require_label: bool) -> tuple[ImageRecord, str]:
    """One CSV row as an `ImageRecord` without its label, and the label's text ("" when empty)."""

    def fail(problem: str) -> DataError:
        return DataError(f"{csv_path}, line {line}: {problem}")

    value = (row.get("path") or "").strip()
    if not value:
        raise fail("the path is empty.")
    image = Path(value) if Path(value).is_absolute() else csv_path.parent / value
    if not image.is_file():
        raise fail(f"the image '{image}' does not exist (relative paths are read from the CSV's folder).")
    label_text = (row.get("label") or "").strip()
    if not label_text and require_label:
        raise fail("the label is empty; every row needs one.")
    camera_text = (row.get("camera") or "").strip()
    try:
        camid = int(camera_text) if camera_text else None
    except ValueError:
        raise fail(f"camera={camera_text!r} is not an integer.") from None
    split = (row.get("split") or "").strip() or None
    if split is not None and split not in SPLITS:
        raise fail(f"split={split!r} is not one of {', '.join(SPLITS)}.")
    return ImageRecord(str(image), None, camid, split), label_text


def _numbered(texts: list[str]) -> list[int | None]:
    """Labels of label texts ("" = none): the integers themselves when all are integers, else each
    distinct text numbered in order of first appearance."""
    try:
        return [int(text) if text else None for text in texts]
    except ValueError:
        names: dict[str, int] = {}
        return [names.setdefault(text, len(names)) if text else None for text in texts]
