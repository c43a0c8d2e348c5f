"""MARS release parser: tracklet records per split and protocol, plus a frame-level Dataset.

The release layout (see docs/mars.md) is read exactly as distributed:

    <root>/bbox_train/<pid>/<frame>.jpg         <root>/info/train_name.txt   tracks_train_info.mat
    <root>/bbox_test/<pid>/<frame>.jpg          <root>/info/test_name.txt    tracks_test_info.mat
                                                <root>/info/query_IDX.mat

Conventions of the records: `pid` is the release's identity (0 = distractor, -1 = junk, kept as is, so
evaluation can recognise them); `camid` is 0-based (the .mat's 1..6 minus 1), as in torchreid.
Every check raises a `DataError` that names the file, so a broken download fails before training starts.
Parsing is vectorised with numpy and frame existence is checked with one directory listing per identity
folder, so the full release (1.2M frame names) loads in seconds.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import scipy.io
import torch
from rich.table import Table
from torch.utils.data import Dataset

from reid.data.image_files import decode_image
from reid.errors import ConfigError, DataError

log = logging.getLogger(__name__)

PROTOCOLS = ("torchreid", "official")
INFO_FILES = {
    "train": ("train_name.txt", "tracks_train_info.mat", "track_train_info"),
    "test": ("test_name.txt", "tracks_test_info.mat", "track_test_info"),
}
QUERY_FILE, QUERY_VAR = "query_IDX.mat", "query_IDX"
JUNK_FOLDER = b"00-1"


@dataclass(frozen=True)
class Tracklet:
    """One tracklet: its frame paths in order, the release identity and a 0-based camera index."""

    paths: tuple[str, ...]
    pid: int
    camid: int


@dataclass
class MarsSplits:
    """Train, query and gallery tracklets of one protocol (MARS's, or of any query/gallery image set whose
    images are single-frame tracklets: Market-1501, own folders and CSV lists).

    MARS, torchreid: junk (pid -1) dropped everywhere; gallery = the test rows not in `query_IDX`.
    MARS, official: query = every `query_IDX` row; gallery = all test rows, the queries and junk (pid -1)
    included, so the evaluation must skip pid -1 and same-camera matches itself.
    `dataset` names the set in the summary's title; `notes` are extra lines of its caption (what was dropped).
    """

    train: list[Tracklet]
    query: list[Tracklet]
    gallery: list[Tracklet]
    protocol: str
    root: Path
    skipped_frames: int = 0
    skipped_tracklets: int = 0
    dataset: str = "MARS"
    notes: tuple[str, ...] = ()

    def counts(self) -> dict[str, dict[str, int]]:
        """Per split: real identities (pid >= 1), tracklets, frames, cameras, distractor and junk tracklets.
        Training pids are labels (Market-1501's count from 0): all of them are identities there."""
        out = {}
        for name in ("train", "query", "gallery"):
            tracklets = getattr(self, name)
            pids = [t.pid for t in tracklets] if name != "train" else [max(t.pid, 1) for t in tracklets]
            out[name] = {
                "ids": len({t.pid for t in tracklets if t.pid > 0 or name == "train"}),
                "tracklets": len(tracklets),
                "frames": sum(len(t.paths) for t in tracklets),
                "cameras": len({t.camid for t in tracklets}),
                "distractors": pids.count(0),
                "junk": pids.count(-1),
            }
        return out

    def summary(self) -> Table:
        """A rich table of `counts()`, with the protocol and any skipped frames in the caption."""
        table = Table(title=f"{self.dataset} ({self.protocol} protocol) at {self.root}")
        table.add_column("split")
        for key in ("ids", "tracklets", "frames", "cameras", "distractors", "junk"):
            table.add_column(key, justify="right")
        for name, row in self.counts().items():
            table.add_row(name, *(f"{v:,}" for v in row.values()))
        notes = list(self.notes)
        if self.skipped_frames:
            notes.append(
                f"skipped {self.skipped_frames:,} missing or unreadable frames "
                f"({self.skipped_tracklets:,} tracklets left empty and dropped)"
            )
        table.caption = "\n".join(notes) or None
        return table


def load_mars(root: str | Path, protocol: str = "torchreid", skip_bad_frames: bool = False) -> MarsSplits:
    """Parse and check a MARS release, and split the test tracklets into query and gallery.

    Args:
        root: the folder holding `bbox_train/`, `bbox_test/` and `info/`.
        protocol: "torchreid" or "official" (see `MarsSplits`).
        skip_bad_frames: skip listed frames absent on disk (counted in `skipped_frames`) instead of failing.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol={protocol!r} is not a MARS protocol; use one of {', '.join(PROTOCOLS)}.")
    root = Path(root).expanduser()
    _check_layout(root)
    train, train_skipped, train_emptied = _load_split(root, "train", skip_bad_frames)
    test, test_skipped, test_emptied = _load_split(root, "test", skip_bad_frames)
    skipped_frames, skipped_tracklets = train_skipped + test_skipped, train_emptied + test_emptied
    if skipped_frames:
        log.warning(
            "MARS: skipped %d listed frames missing on disk; %d tracklets were left empty and dropped.",
            skipped_frames,
            skipped_tracklets,
        )
    query_rows = read_query(root / "info" / QUERY_FILE, len(test))
    in_query = np.zeros(len(test), dtype=bool)
    in_query[query_rows] = True
    if protocol == "torchreid":
        query = [test[i] for i in query_rows if test[i] is not None and test[i].pid != -1]
        gallery = [t for t, q in zip(test, in_query, strict=True) if not q and t is not None and t.pid != -1]
    else:
        query = [test[i] for i in query_rows if test[i] is not None]
        gallery = [t for t in test if t is not None]
    return MarsSplits(
        train=[t for t in train if t is not None],
        query=query,
        gallery=gallery,
        protocol=protocol,
        root=root,
        skipped_frames=skipped_frames,
        skipped_tracklets=skipped_tracklets,
    )


def _check_layout(root: Path) -> None:
    """Fail with one message listing every missing folder or info file of the release."""
    if not root.is_dir():
        raise DataError(
            f"MARS root {root} does not exist or is not a folder. Point the dataset path at the folder that "
            "holds bbox_train/, bbox_test/ and info/ (the unpacked MARS release)."
        )
    info = [f"info/{f}" for name, mat, _ in INFO_FILES.values() for f in (name, mat)] + [f"info/{QUERY_FILE}"]
    missing = [r for r in ["bbox_train/", "bbox_test/", *info] if not (root / r).exists()]
    if missing:
        raise DataError(
            f"The MARS folder {root} lacks {', '.join(missing)}. Expected the release layout bbox_train/, "
            "bbox_test/ and info/ with train_name.txt, test_name.txt, tracks_train_info.mat, "
            "tracks_test_info.mat and query_IDX.mat; the info/ files come with the MARS-evaluation code: "
            "copy its info/ folder into the dataset root."
        )


def _load_split(root: Path, split: str, skip_bad_frames: bool) -> tuple[list[Tracklet | None], int, int]:
    """Read and check one split's name list, tracks file and frames: (tracklets by row, skipped, emptied)."""
    name_file, mat_file, var = INFO_FILES[split]
    name_path, mat_path = root / "info" / name_file, root / "info" / mat_file
    image_dir = root / f"bbox_{split}"
    names = read_names(name_path)
    pids, cams = parse_names(names, name_path)
    tracks = read_tracks(mat_path, var, len(names))
    check_tracks_match_names(tracks, pids, cams, name_path, mat_path)
    exists = frames_on_disk(image_dir, names)
    return _build_tracklets(image_dir, name_path, names, tracks, exists, skip_bad_frames)


def read_names(path: Path) -> np.ndarray:
    """Frame names of a `*_name.txt` file as a bytes array (N,), CR LF or LF line ends stripped."""
    names = np.array(path.read_bytes().splitlines())
    if names.size == 0:
        raise DataError(f"{path} is empty; expected one frame file name a line, e.g. 0001C1T0001F001.jpg.")
    return names


def parse_names(names: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Identity and 1-based camera of each frame name, checked against the pattern `PPPPCcTttttF...jpg`.

    Vectorised over a uint8 view of the bytes array. Returns (pids, cams), int64 arrays of shape (N,);
    the junk folder `00-1` gives pid -1.
    """
    width = names.dtype.itemsize
    chars = np.zeros((len(names), max(width, 12)), dtype=np.uint8)
    chars[:, :width] = names.view(np.uint8).reshape(len(names), width)
    digits = chars.astype(np.int64) - ord("0")
    is_digit = (digits >= 0) & (digits <= 9)
    junk = np.all(chars[:, :4] == np.frombuffer(JUNK_FOLDER, dtype=np.uint8), axis=1)
    valid = (
        (np.all(is_digit[:, :4], axis=1) | junk)
        & (chars[:, 4] == ord("C"))
        & is_digit[:, 5]
        & (chars[:, 6] == ord("T"))
        & np.all(is_digit[:, 7:11], axis=1)
        & (chars[:, 11] == ord("F"))
        & np.char.endswith(names, b".jpg")
    )
    if not valid.all():
        line = int(np.flatnonzero(~valid)[0])
        raise DataError(
            f"{path}, line {line + 1}: {names[line].decode(errors='replace')!r} is not a MARS frame name; "
            "expected <pid 4 chars>C<camera>T<tracklet 4 digits>F<frame>.jpg, e.g. 0065C1T0002F016.jpg. "
            "Use the name list that came with the release."
        )
    pids = np.where(junk, -1, digits[:, :4] @ np.array([1000, 100, 10, 1]))
    return pids, digits[:, 5]


def read_tracks(path: Path, var: str, n_names: int) -> np.ndarray:
    """Rows `[start, end, pid, camid]` of a tracks .mat as int64 (N, 4); start 0-based, end exclusive.

    The file stores 1-based inclusive line numbers into the name list as doubles.
    """
    tracks = _load_mat_var(path, var)
    if tracks.ndim != 2 or tracks.shape[1] != 4 or tracks.shape[0] == 0:
        raise DataError(
            f"{path}: variable {var!r} has shape {tracks.shape}; expected N x 4 rows "
            "[start, end, pid, camid]."
        )
    if not np.all(np.isfinite(tracks)) or np.any(tracks != np.round(tracks)):
        raise DataError(f"{path}: variable {var!r} holds non-integer values; expected whole numbers.")
    tracks = tracks.astype(np.int64)
    start, end = tracks[:, 0], tracks[:, 1]
    bad = (start < 1) | (end < start) | (end > n_names) | (tracks[:, 3] < 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: row {row + 1} of {var!r} is {tracks[row].tolist()}; expected 1 <= start <= end <= "
            f"{n_names} (1-based lines of the name list, which has {n_names} names) and camid >= 1. "
            "The tracks file does not match the name list: use the pair that came with the release."
        )
    return np.column_stack([start - 1, end, tracks[:, 2], tracks[:, 3]])


def read_query(path: Path, n_test_rows: int) -> np.ndarray:
    """0-based test-track rows of the queries (Q,) from `query_IDX.mat` (1 x Q uint16, 1-based)."""
    query = _load_mat_var(path, QUERY_VAR)
    if query.ndim != 2 or min(query.shape) != 1:
        raise DataError(f"{path}: variable {QUERY_VAR!r} has shape {query.shape}; expected 1 x Q.")
    query = query.astype(np.int64).ravel()
    bad = (query < 1) | (query > n_test_rows)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: entry {i + 1} of {QUERY_VAR!r} is {query[i]}, outside 1..{n_test_rows} (the rows of "
            "track_test_info). Use the query_IDX.mat that came with the release."
        )
    if len(np.unique(query)) != len(query):
        raise DataError(f"{path}: {QUERY_VAR!r} lists some test rows twice; expected distinct rows.")
    return query - 1


def _load_mat_var(path: Path, var: str) -> np.ndarray:
    """One variable of a MATLAB (v5) file, with errors that say what the file holds instead."""
    try:
        mat = scipy.io.loadmat(path)
    except (ValueError, OSError, NotImplementedError, scipy.io.matlab.MatReadError) as err:
        raise DataError(
            f"{path} could not be read as a MATLAB .mat file ({err}); re-copy it from the release."
        ) from err
    if var not in mat:
        found = ", ".join(k for k in mat if not k.startswith("__")) or "nothing"
        raise DataError(f"{path} has no variable {var!r} (found: {found}); use the file from the release.")
    return np.asarray(mat[var])


def check_tracks_match_names(
    tracks: np.ndarray, pids: np.ndarray, cams: np.ndarray, name_path: Path, mat_path: Path
) -> None:
    """Check that every frame of every row carries the row's identity and camera (and so its folder)."""
    lengths = tracks[:, 1] - tracks[:, 0]
    rows = np.repeat(np.arange(len(tracks)), lengths)
    frames = tracks[rows, 0] + np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    bad = (pids[frames] != tracks[rows, 2]) | (cams[frames] != tracks[rows, 3])
    if bad.any():
        row = int(rows[np.flatnonzero(bad)[0]])
        line = int(frames[np.flatnonzero(bad)[0]])
        start, end, pid, cam = tracks[row]
        raise DataError(
            f"{mat_path}: tracklet row {row + 1} (pid {pid}, camera {cam}, lines {start + 1}..{end} of "
            f"{name_path.name}) contains line {line + 1} of another identity or camera (pid {pids[line]}, "
            f"camera {cams[line]}). Every frame of a tracklet must share its identity and camera: the name "
            "list and the tracks file do not belong together."
        )


def frames_on_disk(image_dir: Path, names: np.ndarray) -> np.ndarray:
    """Boolean mask (N,) of the names present in `image_dir/<first 4 chars>/`: one listing per folder."""
    present: set[bytes] = set()
    for folder in np.unique(names.astype("S4")).tolist():
        try:
            with os.scandir(os.fsencode(image_dir / folder.decode())) as entries:  # bytes path: bytes names
                present.update(e.name for e in entries)
        except (FileNotFoundError, NotADirectoryError):
            continue
    return np.fromiter(map(present.__contains__, names.tolist()), dtype=bool, count=len(names))


def _build_tracklets(
    image_dir: Path,
    name_path: Path,
    names: np.ndarray,
    tracks: np.ndarray,
    exists: np.ndarray,
    skip_bad_frames: bool,
) -> tuple[list[Tracklet | None], int, int]:
    """Tracklet per row, None where every frame is missing: (tracklets, skipped frames, emptied tracklets).

    Rows keep their positions (so query rows still index them); missing frames fail unless skipped.
    """
    listed = np.zeros(len(names), dtype=bool)
    for start, end in tracks[:, :2]:
        listed[start:end] = True
    missing = np.flatnonzero(listed & ~exists)
    if len(missing) and not skip_bad_frames:
        first = names[missing[0]].decode()
        raise DataError(
            f"{len(missing):,} frames listed in {name_path} are missing on disk, e.g. "
            f"{image_dir / first[:4] / first}. Re-extract {image_dir.name}/ from the release, or set "
            "dataset.skip_bad_frames=true to skip missing frames."
        )
    prefix = str(image_dir) + os.sep
    paths = np.array([prefix + n[:4] + os.sep + n for n in names.astype(str).tolist()], dtype=object)
    tracklets: list[Tracklet | None] = []
    for start, end, pid, cam in tracks.tolist():
        kept = paths[start:end][exists[start:end]]
        tracklets.append(Tracklet(tuple(kept), int(pid), int(cam) - 1) if len(kept) else None)
    return tracklets, len(missing), sum(t is None for t in tracklets)


def sample_frames(tracklet: Tracklet, n: int) -> Tracklet:
    """The same tracklet with at most `n` evenly spaced frames (first and last included): cheap validation."""
    if len(tracklet.paths) <= n:
        return tracklet
    idx = np.round(np.linspace(0, len(tracklet.paths) - 1, n)).astype(int)
    return replace(tracklet, paths=tuple(tracklet.paths[i] for i in idx))


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 3, H, W) as float32 in [0, 1]; done after the host-to-device copy (4x fewer bytes)."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images


class FrameSource(Protocol):
    """Where decoded frames come from instead of JPEGs: `reid.data.frame_cache.FrameCache`."""

    def read(self, path: str) -> np.ndarray:
        """The frame of `path` as uint8 (3, H, W); OSError if it is unreadable."""


class MarsFrameDataset(Dataset):
    """Every frame of some tracklets: item = (image (3, H, W) uint8, pid, camid, tracklet index).

    Images stay uint8 up to the device (`to_unit_float` scales them to [0, 1] there).
    `pids`, `camids` and `tracklet_ids` (numpy, one entry per item) let samplers and evaluation work without
    decoding images. For the paper's augmentation decode slightly larger (e.g. 144 x 72) and let
    `transform` (a callable on the image tensor) random-crop to 128 x 64 and flip.
    Frames are decoded from their files (any format, `reid.data.image_files.decode_image`), or read from
    `cache` (a prepared frame cache of the same size). With `skip_bad_frames`, an unreadable frame is
    replaced by the next readable one of its tracklet and counted in `bad_paths` (per worker process; each
    is also logged once); without, it stops with a `DataError` that ends with `unreadable_hint`.
    """

    unreadable_hint = (
        "Re-extract it from the release, or set dataset.skip_bad_frames=true to replace unreadable frames by "
        "readable ones of the same tracklet."
    )

    def __init__(
        self,
        tracklets: Sequence[Tracklet],
        height: int = 128,
        width: int = 64,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        skip_bad_frames: bool = False,
        cache: FrameSource | None = None,
        unreadable_hint: str | None = None,
    ):
        self.tracklets = list(tracklets)
        self.unreadable_hint = unreadable_hint or self.unreadable_hint
        self.height, self.width = height, width
        self.transform = transform
        self.skip_bad_frames = skip_bad_frames
        self.cache = cache
        lengths = [len(t.paths) for t in self.tracklets]
        self.paths = [p for t in self.tracklets for p in t.paths]
        self.tracklet_ids = np.repeat(np.arange(len(self.tracklets)), lengths)
        self.pids = np.repeat([t.pid for t in self.tracklets], lengths).astype(np.int64)
        self.camids = np.repeat([t.camid for t in self.tracklets], lengths).astype(np.int64)
        self.offsets = np.cumsum([0] + lengths)
        self.bad_paths: set[str] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int, int, int]]:
        """The items of one batch (what a DataLoader worker asks for). A batch that carries a `seed`
        (`SeededBatch`, from `PKSampler`) first seeds a transform that has a `seed` method, so the batch's
        augmentation is the same whichever worker builds it and after whichever batches."""
        seed = getattr(indices, "seed", None)
        if seed is not None and hasattr(self.transform, "seed"):
            self.transform.seed(seed)
        return [self[index] for index in indices]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, int]:
        t = int(self.tracklet_ids[index])
        image = self._load(index, t)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.pids[index]), int(self.camids[index]), t

    def _load(self, index: int, t: int) -> torch.Tensor:
        """Decode frame `index`, or with `skip_bad_frames` the next readable frame of tracklet `t`."""
        start, n = int(self.offsets[t]), int(self.offsets[t + 1] - self.offsets[t])
        for k in range(n if self.skip_bad_frames else 1):
            path = self.paths[start + (index - start + k) % n]
            try:
                return self.read_image(path)
            except OSError as err:
                if not self.skip_bad_frames:
                    raise DataError(
                        f"Frame {path} could not be read as an image ({err}). {self.unreadable_hint}"
                    ) from err
                if path not in self.bad_paths:
                    log.warning("MARS: skipping unreadable frame %s (%s)", path, err)
                    self.bad_paths.add(path)
        raise DataError(f"No frame of the tracklet holding {self.paths[index]} could be read; re-extract it.")

    def read_image(self, path: str) -> torch.Tensor:
        """One frame as uint8 (3, height, width), from the cache if there is one, else from its file."""
        if self.cache is not None:
            return torch.from_numpy(self.cache.read(path))
        return torch.from_numpy(decode_image(path, self.height, self.width)).permute(2, 0, 1).contiguous()
