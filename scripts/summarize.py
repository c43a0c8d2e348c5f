"""Rebuild a sweep's summary.csv, summary.md and summary.png, also for a sweep that was interrupted.

Usage:
    python scripts/summarize.py outputs/multirun/2024-05-01/12-00-00-000000

Runs without final results are listed with their status (missing, failed, interrupted, not started).
The Markdown table is also printed.
"""

import argparse
import sys
from pathlib import Path

from reid.errors import ReidError
from reid.reporting.sweeps import write_summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "sweep_dir", type=Path, help="the sweep folder (hydra.sweep.dir of a `train.py -m` run)"
    )
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(
            f"Error: '{args.sweep_dir}' is not a folder. Pass the sweep folder of a `train.py -m` run.",
            file=sys.stderr,
        )
        return 1
    try:
        paths = write_summary(args.sweep_dir)
    except ReidError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    print(paths[1].read_text())
    print("Wrote " + ", ".join(str(path) for path in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
