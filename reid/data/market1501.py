"""Market-1501 release parser: train, query and gallery images as single-frame tracklets.

The release layout (docs/datasets.md) is read exactly as distributed:

    Market-1501-v15.09.15/bounding_box_train/0002_c1s1_000451_03.jpg
    Market-1501-v15.09.15/bounding_box_test/   (gallery; 0000_* distractors, -1_* junk)
    Market-1501-v15.09.15/query/

File names are `PPPP_cCsS_FFFFFF_BB.jpg`: identity (`-1` junk, `0000` distractor), camera, sequence,
frame and box. Junk is dropped at parse time (the official MATLAB evaluation skips it, which is the same
for ranking); distractors stay in the gallery as negatives; files that are not images (the release ships
a `Thumbs.db`) are ignored. Training identities are relabelled 0..N-1; `camid` is 0-based (c1 -> 0). Both
protocols keep the same lists: `official` ranks with the MATLAB code's trapezoid AP, `torchreid` with step
AP, and both skip gallery images of the query's identity and camera (`reid.retrieval.ranking`).
"""

from __future__ import annotations

import re
from pathlib import Path

from reid.data.image_files import is_image_file
from reid.data.mars import PROTOCOLS, MarsSplits, Tracklet
from reid.errors import ConfigError, DataError

RELEASE_FOLDER = "Market-1501-v15.09.15"
SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
NAME = re.compile(r"(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg")
JUNK, DISTRACTOR = -1, 0


def release_root(root: str | Path) -> Path:
    """The folder holding the split folders: `root` itself, or `root/Market-1501-v15.09.15`."""
    root = Path(root).expanduser()
    if not (root / SPLIT_FOLDERS["train"]).exists() and (root / RELEASE_FOLDER).is_dir():
        return root / RELEASE_FOLDER
    return root


def load_market1501(root: str | Path, protocol: str = "official") -> MarsSplits:
    """Parse and check a Market-1501 release; every problem raises a `DataError` naming the file.

    Args:
        root: `Market-1501-v15.09.15/` or the folder holding it.
        protocol: "official" or "torchreid" (the same lists; recorded for the evaluator, see the module).
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(
            f"dataset.protocol={protocol!r} is not a Market-1501 protocol; use one of {', '.join(PROTOCOLS)}."
        )
    root = release_root(root)
    _check_layout(root)
    train, query, gallery = (
        read_split(root / SPLIT_FOLDERS[split]) for split in ("train", "query", "gallery")
    )
    junk = {
        name: sum(t.pid == JUNK for t in images) for name, images in (("query", query), ("gallery", gallery))
    }
    train_ids = sorted({t.pid for t in train if t.pid > 0})
    label = {pid: i for i, pid in enumerate(train_ids)}
    splits = MarsSplits(
        train=[Tracklet(t.paths, label[t.pid], t.camid) for t in train if t.pid > 0],
        query=[t for t in query if t.pid != JUNK],
        gallery=[t for t in gallery if t.pid != JUNK],
        protocol=protocol,
        root=root,
        dataset="Market-1501",
        notes=(
            f"{SPLIT_FOLDERS['gallery']}/: {len(gallery):,} images, of which "
            f"{len(gallery) - junk['gallery']:,} are not junk; {junk['gallery'] + junk['query']:,} junk (-1) "
            "images dropped; training "
            f"identities relabelled 0..{len(train_ids) - 1}",
        ),
    )
    for name in ("train", "query", "gallery"):
        if not getattr(splits, name):
            raise DataError(
                f"{root / SPLIT_FOLDERS[name]} holds no images of real identities; re-extract it from the "
                f"Market-1501 release."
            )
    return splits


def _check_layout(root: Path) -> None:
    """Fail with one message listing every missing split folder."""
    missing = [f"{folder}/" for folder in SPLIT_FOLDERS.values() if not (root / folder).is_dir()]
    if missing:
        raise DataError(
            f"The Market-1501 folder {root} lacks {', '.join(missing)}. Point the dataset at the unpacked "
            f"release (it holds bounding_box_train/, bounding_box_test/ and query/), e.g. "
            f"dataset.root=/path/to/{RELEASE_FOLDER}."
        )


def read_split(folder: Path) -> list[Tracklet]:
    """Every image of one split folder, sorted by name, as a one-frame `Tracklet` (release pid, 0-based
    camera); other files (Thumbs.db) are ignored, a badly named image raises a `DataError`."""
    images = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p)):
        match = NAME.fullmatch(path.name)
        if match is None or match[2] == "0":
            raise DataError(
                f"{path} is not a Market-1501 image name; expected PPPP_cCsS_FFFFFF_BB.jpg (identity, camera "
                "1-9, sequence, frame, box; identity -1 for junk), e.g. 0002_c1s1_000451_03.jpg. Remove the "
                "file or re-extract the folder from the release."
            )
        images.append(Tracklet((str(path),), int(match[1]), int(match[2]) - 1))
    return images
