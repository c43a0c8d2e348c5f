"""Decode every MARS frame once into a memory-mapped uint8 cache, for `dataset.cache=true`.

    python scripts/prepare_mars.py data/MARS                         # 128 x 64, the evaluation/LuNet size
    python scripts/prepare_mars.py data/MARS --size 128x64 --size 144x72 --workers 8   # + paper's crop size

One cache per size in `<ROOT>/cache/frames_<H>x<W>/` (or --cache-dir): 24.6 kB a frame at 128 x 64, i.e.
29 GB for the 1,191,003 frames of the release (37 GB at 144 x 72). A cache is rebuilt only when frames
were added, removed or changed since it was built (or with --force); otherwise the script says it is up
to date. Training with crop_scale > 1 reads the crop size (height x width times crop_scale) for training
and the input size for validation, so build both.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from reid.data.frame_cache import build_cache, default_cache_dir
from reid.errors import ReidError


def parse_size(text: str) -> tuple[int, int]:
    """'128x64' -> (128, 64)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size {text!r}: expected HEIGHTxWIDTH, e.g. 128x64") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"--size {text!r}: height and width must be positive")
    return height, width


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", type=Path, help="the MARS folder holding bbox_train/ and bbox_test/")
    parser.add_argument("--size", type=parse_size, action="append", help="HEIGHTxWIDTH (repeatable; 128x64)")
    parser.add_argument("--cache-dir", type=Path, help="where caches go (default: ROOT/cache)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoding processes")
    parser.add_argument("--skip-bad-frames", action="store_true", help="mark unreadable frames, don't fail")
    parser.add_argument("--force", action="store_true", help="rebuild even if the cache is up to date")
    args = parser.parse_args(argv)
    cache_dir = args.cache_dir or default_cache_dir(args.root)
    try:
        for height, width in dict.fromkeys(args.size or [(128, 64)]):
            start = time.perf_counter()
            folder, built, meta = build_cache(
                args.root, cache_dir, height, width, args.workers, args.skip_bad_frames, args.force
            )
            count, bad = meta["count"], meta["bad"]
            if built:
                seconds = time.perf_counter() - start
                print(
                    f"Built {folder}: {count:,} frames of {height}x{width} in {seconds:.1f} s "
                    f"({count / seconds:,.0f} frames/s with {args.workers} workers), {bad} unreadable."
                )
            else:
                print(f"{folder} is up to date ({count:,} frames, {bad} unreadable); nothing to do.")
    except ReidError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
