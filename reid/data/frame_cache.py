"""Prepared MARS frames: every frame of `bbox_train/` and `bbox_test/` decoded and resized once into a
memory-mapped uint8 array, so that training reads frames at memory speed instead of decoding JPEGs.

A cache for one frame size is the folder `<cache_dir>/frames_<H>x<W>/` holding

    frames.u8    the frames, uint8 (N, 3, H, W) (contiguous rows stack fast), in the order of `paths.npy`
    paths.npy    (N,) frame paths relative to the MARS root, e.g. `bbox_train/0001/0001C1T0001F001.jpg`
    bad.npy      (N,) bool, frames that could not be decoded (built with skip_bad_frames; rows left zero)
    meta.json    format version, frame size, count, and the fingerprint of the source frames

The fingerprint hashes the relative path, size and modification time of every frame file, so a cache is
rebuilt exactly when a frame was added, removed or rewritten, and a stale cache is never read. A build writes
into a temporary folder (its small files atomically, `reid.files`) and renames it into place, so an
interrupted build leaves no cache that looks valid; a failed one removes its temporary folder. A disk without
room for the frames stops the build before it starts.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from reid.data.jpeg import decode_frame
from reid.errors import DataError, FileWriteError
from reid.files import atomic_file, write_text

FORMAT_VERSION = 2
IMAGE_FOLDERS = ("bbox_train", "bbox_test")
CHUNK = 2048  # frames per build task


def default_cache_dir(root: str | Path) -> Path:
    """Where caches live unless told otherwise: `<root>/cache`."""
    return Path(root).expanduser() / "cache"


def cache_folder(cache_dir: str | Path, height: int, width: int) -> Path:
    return Path(cache_dir).expanduser() / f"frames_{height}x{width}"


def prepare_command(root: str | Path, cache_dir: str | Path, sizes: list[tuple[int, int]]) -> str:
    """The `scripts/prepare_mars.py` command that builds the caches of `sizes`, (height, width) pairs."""
    size_args = " ".join(f"--size {h}x{w}" for h, w in sizes)
    command = f"python scripts/prepare_mars.py {root} {size_args}"
    if Path(cache_dir).expanduser() != default_cache_dir(root):
        command += f" --cache-dir {cache_dir}"
    return command


def list_frames(root: Path) -> list[tuple[str, int, int]]:
    """(path relative to `root`, size in bytes, mtime in ns) of every .jpg under the image folders, sorted."""
    frames = []
    for folder in IMAGE_FOLDERS:
        base = root / folder
        if not base.is_dir():
            raise DataError(f"MARS folder {base} does not exist; point ROOT at the unpacked MARS release.")
        for identity in sorted(os.scandir(base), key=lambda e: e.name):
            if not identity.is_dir():
                continue
            for entry in os.scandir(identity.path):
                if entry.name.endswith(".jpg"):
                    stat = entry.stat()
                    frames.append((f"{folder}/{identity.name}/{entry.name}", stat.st_size, stat.st_mtime_ns))
    frames.sort()
    return frames


def fingerprint(frames: list[tuple[str, int, int]], height: int, width: int) -> str:
    """SHA-1 of the frame size and of every frame's relative path, size and mtime."""
    digest = hashlib.sha1(f"v{FORMAT_VERSION} {height}x{width}\n".encode())
    for path, size, mtime in frames:
        digest.update(f"{path}\0{size}\0{mtime}\n".encode())
    return digest.hexdigest()


def read_meta(folder: Path) -> dict | None:
    """The cache's meta.json, or None if the folder holds no complete cache."""
    try:
        return json.loads((folder / "meta.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class FrameCache:
    """Read access to a built cache: `read(path)` gives the frame of an absolute path under the MARS root.

    The frames are memory-mapped copy-on-write on first read in each process; a pickled cache (a
    DataLoader worker started with spawn or forkserver) maps the file anew instead of carrying it.
    """

    def __init__(self, root: Path, folder: Path, shape: tuple[int, int, int, int]):
        self.root_prefix = str(root) + os.sep
        self.folder, self.shape = folder, shape
        paths = np.load(folder / "paths.npy")
        self.rows = dict(zip(paths.tolist(), range(len(paths)), strict=True))
        self.bad = np.load(folder / "bad.npy")
        self._frames: np.ndarray | None = None

    @classmethod
    def open(cls, root: str | Path, cache_dir: str | Path, height: int, width: int) -> FrameCache:
        """Open the (height, width) cache of `root`; if missing or stale, a `DataError` with the fix."""
        root = Path(root).expanduser()
        folder = cache_folder(cache_dir, height, width)
        meta = read_meta(folder)
        command = prepare_command(root, cache_dir, [(height, width)])
        if meta is None:
            raise DataError(
                f"dataset.cache=true but there is no {height}x{width} frame cache in {folder}. "
                f"Build it once with `{command}`, or set dataset.cache=false."
            )
        if meta.get("fingerprint") != fingerprint(list_frames(root), height, width):
            raise DataError(
                f"The frame cache {folder} is stale: frames under {root} were added, removed or "
                f"changed since it was built. Rebuild it with `{command}`."
            )
        return cls(root, folder, (meta["count"], 3, height, width))

    @property
    def frames(self) -> np.ndarray:
        """All frames, uint8 (N, 3, H, W), memory-mapped."""
        if self._frames is None:
            with open(self.folder / "frames.u8", "rb") as file:
                buffer = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY) if self.shape[0] else b""
            self._frames = np.frombuffer(buffer, dtype=np.uint8).reshape(self.shape)
        return self._frames

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_frames": None}

    def read(self, path: str) -> np.ndarray:
        """Frame (3, H, W) uint8 of `path` (absolute, under the root); OSError if it could not be decoded."""
        key = (
            path[len(self.root_prefix) :].replace(os.sep, "/") if path.startswith(self.root_prefix) else path
        )
        row = self.rows.get(key)
        if row is None:
            raise DataError(
                f"Frame {path} is not in the frame cache {self.folder}; rebuild the cache with "
                "scripts/prepare_mars.py or set dataset.cache=false."
            )
        if self.bad[row]:
            raise OSError(f"the frame was unreadable when the cache {self.folder} was built")
        return self.frames[row]


def build_cache(
    root: str | Path,
    cache_dir: str | Path,
    height: int,
    width: int,
    workers: int = 1,
    skip_bad_frames: bool = False,
    force: bool = False,
) -> tuple[Path, bool, dict]:
    """Build the (height, width) cache of `root` unless an up-to-date one exists: (folder, built, meta).

    Frames are decoded exactly as training decodes them (`reid.data.jpeg.decode_frame`) by `workers`
    processes. An unreadable frame fails the build with its path unless `skip_bad_frames`, which marks it
    bad (training then skips it, as it does with JPEGs).
    """
    root = Path(root).expanduser()
    folder = cache_folder(cache_dir, height, width)
    frames = list_frames(root)
    stamp = fingerprint(frames, height, width)
    meta = read_meta(folder)
    if meta is not None and meta.get("fingerprint") == stamp and not force:
        return folder, False, meta
    folder.parent.mkdir(parents=True, exist_ok=True)
    size = len(frames) * height * width * 3
    free = shutil.disk_usage(folder.parent).free
    if size > free:
        raise FileWriteError(
            f"The {height}x{width} frame cache needs {size / 1e9:.1f} GB but the disk of '{folder.parent}' "
            f"has {free / 1e9:.1f} GB free; nothing was written. Free space, or build it on another disk "
            "with --cache-dir (dataset.cache_dir when training)."
        )
    remove_abandoned_builds(folder)
    staging = folder.with_name(f"{folder.name}.building-{os.getpid()}")
    staging.mkdir()
    try:
        meta = _build(root, staging, frames, stamp, height, width, workers, skip_bad_frames)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _swap_in(staging, folder)
    return folder, True, meta


def remove_abandoned_builds(folder: Path) -> None:
    """Removes, and says so, the staging folders `<folder>.building-<pid>` of builds whose process is gone
    (killed mid-build); a build still running elsewhere is left alone."""
    for staging in folder.parent.glob(f"{folder.name}.building-*"):
        pid = staging.name.rpartition("-")[2]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)
            print(f"Removed '{staging}', the unfinished cache of a build that was killed.")


def _running(pid: int) -> bool:
    """Whether a process `pid` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _build(
    root: Path,
    staging: Path,
    frames: list[tuple[str, int, int]],
    stamp: str,
    height: int,
    width: int,
    workers: int,
    skip_bad_frames: bool,
) -> dict:
    """Writes the cache's files into the folder `staging`; returns its meta."""
    paths = np.array([path for path, _, _ in frames], dtype=str)
    data_file = staging / "frames.u8"
    with open(data_file, "wb") as file:
        file.truncate(len(frames) * height * width * 3)
    tasks = [
        (
            str(root),
            str(data_file),
            paths[start : start + CHUNK].tolist(),
            start,
            height,
            width,
            skip_bad_frames,
        )
        for start in range(0, len(frames), CHUNK)
    ]
    bad = np.zeros(len(frames), dtype=bool)
    for rows in _run(tasks, workers):
        bad[rows] = True
    for name, array in (("paths.npy", paths), ("bad.npy", bad)):
        with atomic_file(staging / name) as file:
            np.save(file, array)
    meta = {
        "version": FORMAT_VERSION,
        "height": height,
        "width": width,
        "count": len(frames),
        "bad": int(bad.sum()),
        "fingerprint": stamp,
    }
    write_text(staging / "meta.json", json.dumps(meta, indent=2))
    return meta


def _run(tasks: list[tuple], workers: int) -> Iterator[list[int]]:
    """Decode the chunks in this process (workers <= 1) or in a process pool; yields bad rows per chunk."""
    if workers <= 1:
        yield from map(_decode_chunk, tasks)
        return
    with ProcessPoolExecutor(workers) as pool:
        yield from pool.map(_decode_chunk, tasks)


def _decode_chunk(task: tuple) -> list[int]:
    """Decode one chunk of frames into its rows of the data file; the rows of unreadable frames."""
    root, data_file, paths, start, height, width, skip_bad_frames = task
    bad = []
    with open(data_file, "r+b") as file:
        out = mmap.mmap(file.fileno(), 0)
        view = np.frombuffer(out, dtype=np.uint8).reshape(-1, 3, height, width)
        for offset, path in enumerate(paths):
            try:
                frame = decode_frame(os.path.join(root, path), height, width)
                view[start + offset] = frame.transpose(2, 0, 1)
            except OSError as err:
                if not skip_bad_frames:
                    raise DataError(
                        f"Frame {Path(root) / path} could not be read as an image ({err}). "
                        "Re-extract it from the release, or pass --skip-bad-frames to mark "
                        "unreadable frames and let training skip them."
                    ) from err
                bad.append(start + offset)
        del view
        out.flush()
        out.close()
    return bad


def _swap_in(staging: Path, folder: Path) -> None:
    """Replace `folder` by `staging`; the old cache, if any, is removed once the new one is in place."""
    old = folder.with_name(f"{folder.name}.old-{os.getpid()}")
    if folder.exists():
        folder.rename(old)
    staging.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
