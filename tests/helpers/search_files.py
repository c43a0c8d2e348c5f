"""Small feature files for search.py's tests: clustered features, each item with a small image of its own."""

from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from PIL import Image

from reid.retrieval.feature_files import FeatureSet, write_features
from tests.helpers.configs import CONFIGS

IDS, DIM = 5, 8


def write_feature_file(folder: Path, name: str, n: int, rng, labelled: bool = True, dim: int = DIM) -> Path:
    """`<folder>/<name>.npz`: n clustered features of IDS identities, each with a small image of its own."""
    centres = np.random.default_rng(123).normal(size=(IDS, dim))
    labels = rng.integers(0, IDS, n)
    features = (centres[labels] + 0.6 * rng.normal(size=(n, dim))).astype(np.float32)
    paths = []
    for i in range(n):
        path = folder / "images" / f"{name}_{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 32), tuple(rng.integers(0, 256, 3).tolist())).save(path)
        paths.append(str(path))
    unknown = np.full(n, -1)
    camids = rng.integers(0, 3, n) if labelled else unknown
    file = folder / f"{name}.npz"
    write_features(file, FeatureSet(features, np.array(paths), labels if labelled else unknown, camids))
    return file


def compose_search(output_dir: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("search", overrides=[f"paths.output_dir={output_dir}", *overrides])
