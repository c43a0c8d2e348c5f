"""Exact chunked search against a brute-force stable argsort of the full distance matrix."""

import numpy as np
import pytest
import torch

from reid.errors import ConfigError
from reid.retrieval.distances import euclidean_distances
from reid.retrieval.search import block_top_k, exact_search


def brute_force(queries: np.ndarray, gallery: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first k of a stable argsort of each full distance row."""
    distances = euclidean_distances(torch.from_numpy(queries), torch.from_numpy(gallery)).numpy()
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, order, 1), order


def integer_features(rng: np.random.Generator, n: int, dim: int = 3) -> np.ndarray:
    """Small integer coordinates: every distance is exact in float32 and many tie."""
    return rng.integers(-2, 3, size=(n, dim)).astype(np.float32)


@pytest.mark.parametrize(
    ("top_k", "chunk_size", "query_batch"), [(5, 7, 3), (1, 1, 50), (10, 64, 1), (40, 13, 8), (100, 9, 16)]
)
def test_exact_search_equals_a_stable_sort_of_the_full_matrix_ties_included(top_k, chunk_size, query_batch):
    rng = np.random.default_rng(0)
    queries, gallery = integer_features(rng, 23), integer_features(rng, 61)
    gallery[40] = gallery[3]  # an exact duplicate, in another chunk
    result = exact_search(queries, gallery, top_k, chunk_size=chunk_size, query_batch=query_batch)
    expected_d, expected_i = brute_force(queries, gallery, top_k)
    assert result.indices.shape == (23, min(top_k, 61))  # k > G returns the whole gallery, ranked
    np.testing.assert_array_equal(result.indices, expected_i)
    np.testing.assert_array_equal(result.distances, expected_d)


def test_exact_search_on_float_features_matches_brute_force():
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(37, 16)).astype(np.float32)
    gallery = rng.normal(size=(500, 16)).astype(np.float32)
    result = exact_search(queries, gallery, 10, chunk_size=77, query_batch=10)
    expected_d, expected_i = brute_force(queries, gallery, 10)
    np.testing.assert_array_equal(result.indices, expected_i)
    np.testing.assert_allclose(result.distances, expected_d, rtol=1e-5, atol=1e-5)


def test_block_top_k_picks_the_earliest_of_tied_items():
    block = torch.tensor([[3.0, 1.0, 1.0, 1.0, 0.0, 1.0], [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    values, cols = block_top_k(block, 3)
    assert cols.tolist() == [[4, 1, 2], [5, 4, 3]]
    assert values.tolist() == [[0.0, 1.0, 1.0], [0.0, 1.0, 2.0]]


def test_bad_sizes_stop_with_the_key():
    with pytest.raises(ConfigError, match="chunk_size=0"):
        exact_search(np.zeros((1, 2)), np.zeros((3, 2)), 1, chunk_size=0)
