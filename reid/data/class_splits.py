"""Labelled image lists split for training and testing: unseen classes (CUB-200, SOP, own folders) or
re-ID style query and gallery (own folders and CSV lists).

Every image is a one-frame `Tracklet` (`pid` = its label), so that query/gallery sets are served and
ranked exactly like MARS (`MarsSplits`), and training reads all of them through `MarsFrameDataset`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.table import Table

from reid.data.image_files import ImageRecord
from reid.data.mars import MarsFrameDataset, MarsSplits, Tracklet
from reid.errors import ConfigError, DataError

UNREADABLE_HINT = "Replace the file with a readable image, or delete it."


@dataclass
class ClassSplits:
    """Training images and test images whose classes training has not seen (retrieval of unseen classes).

    `class_names[label]` names a label where the source has names (folders, CUB's classes.txt), else ().
    """

    train: list[Tracklet]
    test: list[Tracklet]
    root: Path
    dataset: str
    class_names: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def counts(self) -> dict[str, dict[str, int]]:
        """Per split: classes and images."""
        return {
            name: {"classes": len({t.pid for t in images}), "images": len(images)}
            for name, images in (("train", self.train), ("test", self.test))
        }

    def summary(self) -> Table:
        """A rich table of `counts()`, with `notes` in the caption."""
        table = Table(title=f"{self.dataset} (unseen classes) at {self.root}")
        for column in ("split", "classes", "images"):
            table.add_column(column, justify="left" if column == "split" else "right")
        for name, row in self.counts().items():
            table.add_row(name, *(f"{v:,}" for v in row.values()))
        table.caption = "\n".join(self.notes) or None
        return table


class LabelledImageDataset(MarsFrameDataset):
    """Images of one-frame tracklets as (image (3, H, W) uint8, label) items; `labels` (N,) numpy."""

    def __init__(
        self,
        images: Sequence[Tracklet],
        height: int,
        width: int,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        super().__init__(images, height, width, transform, unreadable_hint=UNREADABLE_HINT)
        self.labels = self.pids

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label, _, _ = super().__getitem__(index)
        return image, label


def images_of(records: Sequence[ImageRecord], camid: int = 0) -> list[Tracklet]:
    """One-frame tracklets of labelled records; a record without a camera gets `camid`."""
    return [Tracklet((r.path,), r.label, camid if r.camid is None else r.camid) for r in records]


def split_by_class(
    records: Sequence[ImageRecord],
    train_classes: int | None,
    root: Path,
    dataset: str,
    class_names: tuple[str, ...] = (),
) -> ClassSplits:
    """The CUB-200 / Cars196 / SOP convention: labels sorted, the first `train_classes` (None: half,
    rounded down) for training, the rest unseen at test time."""
    labels = sorted({r.label for r in records})
    n_train = len(labels) // 2 if train_classes is None else train_classes
    if not 1 <= n_train < len(labels):
        raise ConfigError(
            f"dataset.train_classes={train_classes}: {root} has {len(labels)} classes, and both training and "
            f"testing need at least one; set dataset.train_classes to 1..{len(labels) - 1} (null: half)."
        )
    seen = set(labels[:n_train])
    return ClassSplits(
        train=images_of([r for r in records if r.label in seen]),
        test=images_of([r for r in records if r.label not in seen]),
        root=root,
        dataset=dataset,
        class_names=class_names,
        notes=(
            f"classes sorted by label: the first {n_train} train, the other {len(labels) - n_train} test",
        ),
    )


def splits_from_records(
    records: Sequence[ImageRecord], root: Path, dataset: str, class_names: tuple[str, ...] = ()
) -> ClassSplits | MarsSplits:
    """Records that each name their split: train + test -> `ClassSplits`; train + query + gallery ->
    `MarsSplits` (torchreid protocol, step AP). Query images without a camera get camid 0 and gallery
    images camid 1, so no gallery image is skipped as a same-camera match."""
    by_split: dict[str, list[ImageRecord]] = {}
    for record in records:
        by_split.setdefault(record.split, []).append(record)
    found = set(by_split)
    if found == {"train", "test"}:
        return ClassSplits(
            images_of(by_split["train"]), images_of(by_split["test"]), root, dataset, class_names
        )
    if found == {"train", "query", "gallery"}:
        return MarsSplits(
            train=images_of(by_split["train"]),
            query=images_of(by_split["query"], camid=0),
            gallery=images_of(by_split["gallery"], camid=1),
            protocol="torchreid",
            root=root,
            dataset=dataset,
            notes=("images without a camera: query camera 0, gallery camera 1 (nothing skipped)",),
        )
    raise DataError(
        f"{root} has images of the splits {', '.join(sorted(found))}; expected train and test (unseen "
        "classes) or train, query and gallery (re-ID style retrieval)."
    )
