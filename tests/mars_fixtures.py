"""Helpers for tests that need a synthetic MARS tree: the generator lives in scripts/, not in the package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

GENERATOR = Path(__file__).resolve().parents[1] / "scripts" / "make_synthetic_mars.py"

# Small enough to write in about a second, large enough for every role: query-only and gallery-only ids,
# distractors, junk, several cameras.
SMALL = dict(ids_train=4, ids_test=15, cameras=6, distractors=3, junk=2, min_frames=2, max_frames=5, seed=3)


def load_generator() -> ModuleType:
    """Import scripts/make_synthetic_mars.py as a module (registered first: its dataclasses need that)."""
    if "make_synthetic_mars" not in sys.modules:
        spec = importlib.util.spec_from_file_location("make_synthetic_mars", GENERATOR)
        module = importlib.util.module_from_spec(spec)
        sys.modules["make_synthetic_mars"] = module
        spec.loader.exec_module(module)
    return sys.modules["make_synthetic_mars"]


def write_small_mars(out: Path, **overrides):
    """Write a small synthetic MARS tree under `out` and return its ground truth (`SyntheticMars`)."""
    return load_generator().make_synthetic_mars(out, **{**SMALL, **overrides})
