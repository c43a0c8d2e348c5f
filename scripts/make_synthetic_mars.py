"""Write a small synthetic dataset in the exact MARS release layout (`reid.data.synthetic_mars`).

python scripts/make_synthetic_mars.py data/mars_synthetic [--ids-train 40 --ids-test 30 --seed 0]
"""

import argparse
import sys
from pathlib import Path

from reid.data.synthetic_mars import make_synthetic_mars
from reid.errors import ReidError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="new or empty folder to write the tree into")
    parser.add_argument("--ids-train", type=int, default=40)
    parser.add_argument("--ids-test", type=int, default=30)
    parser.add_argument("--cameras", type=int, default=6)
    parser.add_argument("--distractors", type=int, default=8, help="tracklets of pid 0 (folder 0000)")
    parser.add_argument("--junk", type=int, default=4, help="tracklets of pid -1 (folder 00-1)")
    parser.add_argument("--min-frames", type=int, default=4)
    parser.add_argument("--max-frames", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        truth = make_synthetic_mars(**vars(args))
    except ReidError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    frames = sum(len(r.names) for r in truth.train + truth.test)
    print(
        f"Wrote {args.out}: {len(truth.train)} train and {len(truth.test)} test tracklets, "
        f"{len(truth.query)} queries, {frames} frames."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
