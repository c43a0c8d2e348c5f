"""The FAISS index: its recall against exact search on clustered data, and its file kept next to the
features (reused while they are unchanged, rebuilt when they change)."""

import json

import numpy as np
import pytest

from reid.retrieval.faiss_index import faiss_search, index_paths, load_or_build_index, recall_at_k
from reid.retrieval.feature_files import FeatureSet, write_features
from reid.retrieval.search import exact_search

pytest.importorskip("faiss", reason="faiss-cpu is an optional extra: pip install -e '.[faiss]'")


def clustered(rng: np.random.Generator, n: int, dim: int = 32, clusters: int = 50) -> np.ndarray:
    """A mixture of Gaussians, as embeddings of many identities are."""
    centres = rng.normal(size=(clusters, dim)) * 4
    return (centres[rng.integers(clusters, size=n)] + rng.normal(size=(n, dim))).astype(np.float32)


def save_gallery(path, features: np.ndarray) -> None:
    n = len(features)
    write_features(
        path, FeatureSet(features, np.array([f"g{i}" for i in range(n)]), np.full(n, -1), np.full(n, -1))
    )


def test_faiss_recall_at_10_reaches_095_and_the_index_is_reused_until_the_features_change(tmp_path, capsys):
    rng = np.random.default_rng(0)
    points = clustered(rng, 20_300)
    gallery, queries = points[:20_000], points[20_000:]
    path = tmp_path / "gallery.npz"
    save_gallery(path, gallery)
    index, nprobe = load_or_build_index(path, gallery)
    found = faiss_search(index, nprobe, queries, gallery, 10)
    exact = exact_search(queries, gallery, 10)
    assert recall_at_k(found.indices, exact.indices) >= 0.95
    assert 1 <= nprobe < index.nlist  # calibrated: fewer lists than all, or it would be exact search
    hit = found.indices == exact.indices  # the same neighbour at the same place: the same distance
    np.testing.assert_allclose(found.distances[hit], exact.distances[hit], rtol=1e-4, atol=1e-4)

    index_file, record_file = index_paths(path)
    assert index_file.name == "gallery.faiss" and json.loads(record_file.read_text())["nprobe"] == nprobe
    built = index_file.stat().st_mtime_ns
    capsys.readouterr()
    load_or_build_index(path, gallery)
    assert "Reusing" in capsys.readouterr().out and index_file.stat().st_mtime_ns == built

    changed = gallery.copy()
    changed[0] += 1
    save_gallery(path, changed)
    index, _ = load_or_build_index(path, changed)
    assert "built from other features" in capsys.readouterr().out
    assert index.ntotal == len(changed) and index_file.stat().st_mtime_ns != built
