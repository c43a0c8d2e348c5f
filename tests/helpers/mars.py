"""Small synthetic MARS trees for tests, written by the package's generator."""

from pathlib import Path

from reid.data.synthetic_mars import SyntheticMars, make_synthetic_mars

# Small enough to write in about a second, large enough for every role: query-only and gallery-only ids,
# distractors, junk, several cameras.
SMALL = dict(ids_train=4, ids_test=15, cameras=6, distractors=3, junk=2, min_frames=2, max_frames=5, seed=3)


def write_small_mars(out: Path, **overrides) -> SyntheticMars:
    """Write a small synthetic MARS tree under `out` and return its ground truth."""
    return make_synthetic_mars(out, **{**SMALL, **overrides})
