"""Write a small synthetic dataset in the exact Market-1501 release layout (`reid.data.synthetic_market`).

python scripts/make_synthetic_market.py data/market_synthetic [--ids-train 40 --ids-test 30 --seed 0]
"""

import argparse
import sys
from pathlib import Path

from reid.data.synthetic_market import make_synthetic_market
from reid.errors import ReidError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "out", type=Path, help="new or empty folder; the tree goes into its Market-1501-v15.09.15/"
    )
    parser.add_argument("--ids-train", type=int, default=40)
    parser.add_argument("--ids-test", type=int, default=30)
    parser.add_argument("--cameras", type=int, default=6)
    parser.add_argument("--distractors", type=int, default=10, help="gallery images of identity 0000")
    parser.add_argument("--junk", type=int, default=6, help="gallery images of identity -1")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        truth = make_synthetic_market(**vars(args))
    except ReidError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"Wrote {truth.root}: {len(truth.train)} train, {len(truth.query)} query and "
        f"{len(truth.gallery)} gallery images."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
