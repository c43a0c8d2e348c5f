"""A small synthetic dataset in the exact MARS release layout, for tests and smoke runs.

`scripts/make_synthetic_mars.py` writes one from the command line. The tree mirrors the release
(docs/mars.md): bbox_train/<pid>/, bbox_test/ with the junk folder `00-1`
and the distractor folder `0000`, frame names such as 0065C1T0002F016.jpg (tracklet numbers count up per
identity, frames from F001 in each tracklet), info/*_name.txt with CR LF line ends listed folder by folder
in ASCII order, tracks .mat files of 1-based inclusive [start, end, pid, camid] doubles and a 1 x Q uint16
query_IDX. Each identity wears its own colours and pattern (torso stripes, bag), drawn on a noisy
background with per-frame jitter and a per-camera colour cast, so a small net learns it within a minute
on a CPU. As in the real set, each query identity has 2..6 query tracklets, at most one per camera, some
query identities have no other-camera match left in the gallery, and some identities are gallery-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.io
from PIL import Image

from reid.errors import ConfigError, DataError

HEIGHT, WIDTH = 256, 128
YY, XX = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
SHADE = (0.85 + 0.3 * YY / HEIGHT)[..., None]  # vertical background gradient (H, W, 1)


class TrackRow(NamedTuple):
    """One written tracklet: identity (0 distractor, -1 junk), 1-based camera, frame names in order."""

    pid: int
    camid: int
    names: tuple[str, ...]


@dataclass
class SyntheticMars:
    """Ground truth of what was written: the rows of each tracks file and the 0-based query rows."""

    train: list[TrackRow]
    test: list[TrackRow]
    query: list[int]


def make_synthetic_mars(
    out: str | Path,
    ids_train: int = 40,
    ids_test: int = 30,
    cameras: int = 6,
    distractors: int = 8,
    junk: int = 4,
    min_frames: int = 4,
    max_frames: int = 12,
    seed: int = 0,
) -> SyntheticMars:
    """Write the tree under `out` (new or empty folder) and return its ground truth.

    Args:
        ids_train, ids_test: identities per split (disjoint; ids_test >= 2).
        cameras: number of cameras (2..9; the release has 6).
        distractors, junk: tracklets of pid 0 (folder 0000) and pid -1 (folder 00-1) in the test split.
        min_frames, max_frames: tracklet length range (inclusive).
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(
            f"{out} already exists and is not an empty folder; refusing to write the synthetic MARS tree "
            "into it (that could mix with or overwrite real data). Choose a new or empty folder."
        )
    if not 2 <= cameras <= 9 or ids_test < 2 or ids_train < 1 or not 1 <= min_frames <= max_frames:
        raise ConfigError(
            "make_synthetic_mars needs 2 <= cameras <= 9, ids_train >= 1, ids_test >= 2 and "
            f"1 <= min_frames <= max_frames; got cameras={cameras}, ids_train={ids_train}, "
            f"ids_test={ids_test}, min_frames={min_frames}, max_frames={max_frames}."
        )
    rng = np.random.default_rng(seed)
    gains = rng.uniform(0.75, 1.2, (cameras, 1)) * rng.uniform(0.9, 1.1, (cameras, 3))
    pids = rng.choice(np.arange(1, 1501), ids_train + ids_test, replace=False)
    looks = {int(pid): random_look(rng) for pid in pids}
    lengths = (min_frames, max_frames)

    train_plan = {int(p): _train_cameras(rng, cameras) for p in np.sort(pids[:ids_train])}
    test_plan, query_keys = _test_plan(rng, np.sort(pids[ids_train:]), cameras)
    test_plan[0] = [int(c) for c in np.sort(rng.integers(1, cameras + 1, distractors))]
    test_plan[-1] = [int(c) for c in np.sort(rng.integers(1, cameras + 1, junk))]

    train = _write_split(out / "bbox_train", train_plan, looks, gains, lengths, rng)
    test = _write_split(out / "bbox_test", test_plan, looks, gains, lengths, rng)
    row_of = {(row.pid, _tracklet_number(row)): r for r, row in enumerate(test)}
    query = sorted(row_of[key] for key in query_keys)

    info = out / "info"
    info.mkdir()
    for name, var, rows in (("train", "track_train_info", train), ("test", "track_test_info", test)):
        names = [n for row in rows for n in row.names]
        (info / f"{name}_name.txt").write_bytes("".join(f"{n}\r\n" for n in names).encode())
        sizes = np.array([len(row.names) for row in rows])
        ends = np.cumsum(sizes)
        table = np.column_stack([ends - sizes + 1, ends, [r.pid for r in rows], [r.camid for r in rows]])
        scipy.io.savemat(info / f"tracks_{name}_info.mat", {var: table.astype(np.float64)})
    query_idx = np.array(query, dtype=np.uint16).reshape(1, -1) + 1
    scipy.io.savemat(info / "query_IDX.mat", {"query_IDX": query_idx})
    return SyntheticMars(train=train, test=test, query=query)


def _train_cameras(rng: np.random.Generator, cameras: int) -> list[int]:
    """Camera of each tracklet of a train identity: 2..4 cameras, 1..2 tracklets each, sorted."""
    cams = rng.choice(np.arange(1, cameras + 1), rng.integers(2, min(4, cameras) + 1), replace=False)
    return sorted(int(c) for c in cams for _ in range(rng.integers(1, 3)))


def _test_plan(
    rng: np.random.Generator, pids: np.ndarray, cameras: int
) -> tuple[dict[int, list[int]], list[tuple[int, int]]]:
    """Tracklet cameras per test identity and the queries as (pid, tracklet number) keys.

    Roles: ~10% "query only" (two cameras, one tracklet each, both queried: no gallery match under the
    torchreid protocol), one in 15 gallery-only, the rest 2..6 queries on distinct cameras.
    """
    n_query_only, n_gallery_only = max(1, len(pids) // 10), len(pids) // 15
    roles = rng.permutation(
        ["query_only"] * n_query_only
        + ["gallery_only"] * n_gallery_only
        + ["normal"] * (len(pids) - n_query_only - n_gallery_only)
    )
    plan, queries = {}, []
    for pid, role in zip(pids.tolist(), roles, strict=True):
        n_cams = 2 if role == "query_only" else rng.integers(2, cameras + 1)
        cams = np.sort(rng.choice(np.arange(1, cameras + 1), n_cams, replace=False))
        per_cam = np.ones(n_cams, int) if role == "query_only" else rng.integers(1, 3, n_cams)
        plan[pid] = [int(c) for c, k in zip(cams, per_cam, strict=True) for _ in range(k)]
        if role == "gallery_only":
            continue
        n_q = n_cams if role == "query_only" else rng.integers(2, min(6, n_cams) + 1)
        first = np.cumsum(per_cam) - per_cam  # index of each camera's first tracklet
        for c in rng.choice(n_cams, n_q, replace=False):
            queries.append((pid, int(first[c] + rng.integers(per_cam[c])) + 1))
    return plan, queries


def _tracklet_number(row: TrackRow) -> int:
    """The T field of a frame name: tracklet number within its identity."""
    return int(row.names[0][7:11])


def _write_split(
    image_dir: Path,
    plan: dict[int, list[int]],
    looks: dict[int, dict],
    gains: np.ndarray,
    lengths: tuple[int, int],
    rng: np.random.Generator,
) -> list[TrackRow]:
    """Render and save every tracklet of `plan` (pid -> sorted cameras); rows in name-list order."""
    rows = []
    for pid, cams in sorted(plan.items(), key=lambda item: _folder(item[0])):
        folder = image_dir / _folder(pid)
        folder.mkdir(parents=True)
        for number, cam in enumerate(cams, start=1):
            state = tracklet_state(rng)
            names = []
            for frame in range(1, rng.integers(lengths[0], lengths[1] + 1) + 1):
                name = f"{_folder(pid)}C{cam}T{number:04d}F{frame:03d}.jpg"
                pixels = render_person(looks.get(pid), state, gains[cam - 1], pid, rng)
                Image.fromarray(pixels).save(folder / name, quality=90)
                names.append(name)
            rows.append(TrackRow(pid, cam, tuple(names)))
    return rows


def _folder(pid: int) -> str:
    """Identity folder name: 4 digits, and `00-1` for the junk identity -1 (sorts before `0000`)."""
    return "00-1" if pid == -1 else f"{pid:04d}"


def random_look(rng: np.random.Generator) -> dict:
    """An identity's clothing: torso/legs/pattern/hair colours, torso pattern and an optional bag."""
    return {
        "torso": rng.uniform(0.05, 0.95, 3),
        "legs": rng.uniform(0.05, 0.95, 3),
        "accent": rng.uniform(0.05, 0.95, 3),
        "hair": rng.uniform(0.0, 0.4, 3),
        "pattern": rng.choice(["plain", "hstripes", "vstripes", "split"]),
        "bag": rng.uniform(0.05, 0.95, 3) if rng.random() < 0.5 else None,
    }


def tracklet_state(rng: np.random.Generator) -> dict:
    """What stays fixed within a tracklet: background colour, position and size of the person."""
    background = rng.uniform(0.3, 0.7) + rng.uniform(-0.08, 0.08, 3)  # greyish: colour belongs to people
    return {"background": background, "x": rng.uniform(-8, 8), "scale": rng.uniform(0.88, 1.05)}


def render_person(
    look: dict | None, state: dict, gain: np.ndarray, pid: int, rng: np.random.Generator
) -> np.ndarray:
    """One 256 x 128 RGB uint8 frame: background, person (distractor: blobs; junk: noise), camera cast.

    The person is drawn with rectangles in body coordinates (top of head = 0, centre line = 0, scaled by
    `s`) and jittered per frame.
    """
    image = np.empty((HEIGHT, WIDTH, 3), np.float32)
    image[:] = state["background"] * SHADE
    noise = 0.06
    if look is not None:
        s = state["scale"] * rng.uniform(0.97, 1.03)
        cx, top = WIDTH / 2 + state["x"] + rng.uniform(-3, 3), 18 + rng.uniform(-4, 4)

        def box(y0: float, y1: float, x0: float, x1: float) -> tuple[slice, slice]:
            return slice(max(0, round(top + y0 * s)), round(top + y1 * s)), slice(
                max(0, round(cx + x0 * s)), round(cx + x1 * s)
            )

        image[box(122, 222, -26, -3)] = look["legs"]
        image[box(122, 222, 3, 26)] = look["legs"]
        image[box(38, 122, -36, 36)] = look["torso"]
        if look["pattern"] == "hstripes":
            for y in range(38, 122, 24):
                image[box(y, y + 12, -36, 36)] = look["accent"]
        elif look["pattern"] == "vstripes":
            for x in range(-36, 36, 18):
                image[box(38, 122, x, x + 9)] = look["accent"]
        elif look["pattern"] == "split":
            image[box(80, 122, -36, 36)] = look["accent"]
        image[box(4, 36, -13, 13)] = (0.8, 0.6, 0.5)
        image[box(2, 12, -14, 14)] = look["hair"]
        if look["bag"] is not None:
            image[box(60, 110, 36, 50)] = look["bag"]
    elif pid == 0:  # distractor: a false detection, random coloured blobs
        for _ in range(3):
            y, x, r = rng.uniform(0, HEIGHT), rng.uniform(0, WIDTH), rng.uniform(15, 50)
            image[(YY - y) ** 2 + (XX - x) ** 2 < r**2] = rng.uniform(0, 1, 3)
    else:  # junk: mostly noise
        noise = 0.3
    image += rng.standard_normal((HEIGHT, WIDTH, 3), dtype=np.float32) * noise
    image *= gain.astype(np.float32)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)
