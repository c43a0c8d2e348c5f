"""Atomic file writes: every file the project writes appears complete under its name, or not at all.

`atomic_file(path)` hands out `<folder>/.<name>.<8 hex digits>.tmp`, a new file in the destination folder
(so the final rename never crosses filesystems, whatever $TMPDIR is), flushes and fsyncs it, and
`os.replace`s it onto `path`. A write that fails (a full disk, any `OSError`) removes its temporary file,
leaves the previous `path` untouched and raises a `FileWriteError` naming the folder and what was kept.
Only a killed process leaves a temporary file behind; `remove_leftovers` clears those whose writer is gone
(the writer holds an advisory lock on its file while it writes).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from reid.errors import FileWriteError

TEMP_FILE = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{8}\.tmp")
"""The name of a temporary file of `atomic_file`: `.<final name>.<8 hex digits>.tmp`."""
UNLOCKABLE_STALE_S = 3600
"""Where the filesystem has no locks, a temporary file untouched for this long counts as left over."""
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file to write `path`'s new content into (its folder is made if needed); it replaces `path`
    when the block ends without an error. On an error the temporary file is removed and `path` keeps its
    previous content."""
    path = Path(path)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise write_error(path, error) from error
    try:
        with os.fdopen(descriptor, "wb") as file:
            _lock(file.fileno())
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException as error:
        temp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise write_error(path, error) from error
        raise
    _sync_folder(path.parent)


def write_text(path: str | Path, text: str) -> None:
    """`path` holds `text` (UTF-8), written atomically."""
    with atomic_file(path) as file:
        file.write(text.encode())


def write_error(path: Path, error: OSError) -> FileWriteError:
    """One paragraph: which folder could not take `path`, why, and what the folder still holds."""
    folder = path.parent
    reason = "the disk is full" if error.errno in FULL_DISK else "the system refused it"
    if path.is_file():
        written = datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M:%S")
        kept = f"The previous '{path.name}' (written {written}) was kept unchanged"
    else:
        kept = f"No '{path.name}' was created"
    held = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []
    listing = f"; the folder holds {', '.join(held[:8])}{', ...' if len(held) > 8 else ''}" if held else ""
    fix = "Free space on that disk" if error.errno in FULL_DISK else "Fix the folder's permissions or disk"
    return FileWriteError(
        f"Could not write '{path.name}' into the folder '{folder}': {reason} ({error.strerror}). {kept}, "
        f"and no partial file was left{listing}. {fix} (or point the output elsewhere), then run again."
    )


def remove_leftovers(folder: str | Path) -> list[Path]:
    """Removes the temporary files of `atomic_file` in `folder` whose writer is gone (killed mid-write);
    returns them. A file still being written (its lock is held) and every other file are left alone."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if TEMP_FILE.fullmatch(path.name) and path.is_file() and _abandoned(path):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def clear_leftovers(*folders: str | Path) -> None:
    """Removes, and says so, what writes killed mid-way left in `folders` (their temporary files only)."""
    for folder in dict.fromkeys(Path(f) for f in folders):
        for path in remove_leftovers(folder):
            print(f"Removed '{path}', the partial file of a write that was killed (nothing else is touched).")


def _lock(descriptor: int) -> bool:
    """Takes the advisory lock that marks a temporary file as being written; False where there are none."""
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EACCES):
            raise
        return False
    return True


def _abandoned(path: Path) -> bool:
    """Whether no process is writing the temporary file `path` (nobody holds its lock)."""
    try:
        descriptor = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return False
    try:
        return _lock(descriptor) or time.time() - os.fstat(descriptor).st_mtime > UNLOCKABLE_STALE_S
    except OSError:
        return False
    finally:
        os.close(descriptor)


def _sync_folder(folder: Path) -> None:
    """Makes a rename in `folder` durable; a filesystem that cannot sync folders is left as it is."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    with suppress(OSError):
        os.fsync(descriptor)
    os.close(descriptor)
