"""A small synthetic dataset in the exact Market-1501 release layout, for tests and smoke runs.

`scripts/make_synthetic_market.py` writes one from the command line. The tree mirrors the release
(docs/datasets.md): `Market-1501-v15.09.15/` holding `bounding_box_train/`, `bounding_box_test/` and
`query/`, 128 x 64 JPEGs named `PPPP_cCsS_FFFFFF_BB.jpg`, junk images `-1_c...` and distractors `0000_c...`
in the gallery, and a `Thumbs.db` in each image folder, as the release ships. People are drawn by the
synthetic MARS generator (`reid.data.synthetic_mars.render_person`: own colours and pattern per identity, a
colour cast per camera). Each test identity is seen by 2..`cameras` cameras; it has at most one query per
camera, and its gallery holds 1..3 images per camera.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from reid.data.market1501 import RELEASE_FOLDER, SPLIT_FOLDERS
from reid.data.synthetic_mars import random_look, render_person, tracklet_state
from reid.errors import ConfigError, DataError

HEIGHT, WIDTH = 128, 64  # the release's image size
THUMBS_DB = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)  # an OLE2 header, as Windows writes them


class MarketImage(NamedTuple):
    """One written image: its file name, identity (0 distractor, -1 junk) and 1-based camera."""

    name: str
    pid: int
    camid: int


@dataclass
class SyntheticMarket:
    """Ground truth of what was written under `root` (the `Market-1501-v15.09.15` folder)."""

    root: Path
    train: list[MarketImage]
    query: list[MarketImage]
    gallery: list[MarketImage]


def make_synthetic_market(
    out: str | Path,
    ids_train: int = 40,
    ids_test: int = 30,
    cameras: int = 6,
    distractors: int = 10,
    junk: int = 6,
    seed: int = 0,
) -> SyntheticMarket:
    """Write `out/Market-1501-v15.09.15/` (`out` new or empty) and return its ground truth.

    Args:
        ids_train, ids_test: identities per split (disjoint; ids_test >= 1).
        cameras: number of cameras (2..6, as the release's c1..c6).
        distractors, junk: gallery images of identity 0000 and -1.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(
            f"{out} already exists and is not an empty folder; refusing to write the synthetic Market-1501 "
            "tree into it (that could mix with or overwrite real data). Choose a new or empty folder."
        )
    if not 2 <= cameras <= 6 or ids_train < 1 or ids_test < 1:
        raise ConfigError(
            "make_synthetic_market needs 2 <= cameras <= 6, ids_train >= 1 and ids_test >= 1; got "
            f"cameras={cameras}, ids_train={ids_train}, ids_test={ids_test}."
        )
    rng = np.random.default_rng(seed)
    gains = rng.uniform(0.75, 1.2, (cameras, 1)) * rng.uniform(0.9, 1.1, (cameras, 3))
    pids = rng.choice(np.arange(1, 1502), ids_train + ids_test, replace=False)
    root = out / RELEASE_FOLDER
    folders = {split: root / folder for split, folder in SPLIT_FOLDERS.items()}
    for folder in folders.values():
        folder.mkdir(parents=True)
    (folders["train"] / "Thumbs.db").write_bytes(THUMBS_DB)
    (folders["gallery"] / "Thumbs.db").write_bytes(THUMBS_DB)
    plan: dict[str, list[tuple[int, int]]] = {"train": [], "query": [], "gallery": []}
    for pid in np.sort(pids[:ids_train]).tolist():
        for cam in _cameras(rng, cameras):
            plan["train"] += [(pid, cam)] * int(rng.integers(2, 5))
    for pid in np.sort(pids[ids_train:]).tolist():
        cams = _cameras(rng, cameras)
        plan["query"] += [(pid, int(cam)) for cam in rng.choice(cams, rng.integers(1, len(cams) + 1), False)]
        for cam in cams:
            plan["gallery"] += [(pid, cam)] * int(rng.integers(1, 4))
    plan["gallery"] += [(0, int(c)) for c in rng.integers(1, cameras + 1, distractors)]
    plan["gallery"] += [(-1, int(c)) for c in rng.integers(1, cameras + 1, junk)]
    written = {split: _write(folders[split], rows, gains, seed, rng) for split, rows in plan.items()}
    return SyntheticMarket(root=root, **written)


def _cameras(rng: np.random.Generator, cameras: int) -> list[int]:
    """2..cameras distinct 1-based cameras, sorted."""
    return sorted(int(c) for c in rng.choice(np.arange(1, cameras + 1), rng.integers(2, cameras + 1), False))


def _write(
    folder: Path, rows: list[tuple[int, int]], gains: np.ndarray, seed: int, rng: np.random.Generator
) -> list[MarketImage]:
    """Render and save one image per (pid, camera) row, frame numbers counting up; sorted by name.
    An identity's look is drawn from (seed, pid), so it is the same in every split."""
    looks: dict[int, dict] = {}
    images = []
    for frame, (pid, cam) in enumerate(rows, start=1):
        look = None if pid <= 0 else looks.setdefault(pid, random_look(np.random.default_rng([seed, pid])))
        pixels = render_person(look, tracklet_state(rng), gains[cam - 1], pid, rng)
        name = f"{'-1' if pid == -1 else f'{pid:04d}'}_c{cam}s{rng.integers(1, 7)}_{frame * 25:06d}_01.jpg"
        Image.fromarray(pixels).resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR).save(
            folder / name, quality=90
        )
        images.append(MarketImage(name, pid, cam))
    return sorted(images)
