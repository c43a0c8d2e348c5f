"""k-reciprocal re-ranking against a dense, loop-by-loop version written from the paper's formulas."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from reid.errors import ConfigError
from reid.retrieval.rerank import re_ranking


def brute_force_re_ranking(q_g, q_q, g_g, k1, k2, lambda_value):
    """Zhong et al. (CVPR 2017) item by item, with the conventions documented in reid.retrieval.rerank."""
    d = np.block([[q_q, q_g], [q_g.T, g_g]]) ** 2
    d = d / d.max(axis=1, keepdims=True)
    n, num_q = len(d), len(q_q)
    ranking = np.argsort(d, axis=1, kind="stable")

    def nearest(p, k):  # N(p, k): p and its k nearest
        return set(ranking[p, : k + 1].tolist())

    def reciprocal(p, k):  # R(p, k) = {g in N(p, k) : p in N(g, k)}
        return {g for g in nearest(p, k) if p in nearest(g, k)}

    v = np.zeros((n, n))
    for p in range(n):
        r = reciprocal(p, k1)
        expanded = set(r)
        for q in r:
            r_half = reciprocal(q, round(k1 / 2))
            if len(r & r_half) > 2 / 3 * len(r_half):
                expanded |= r_half
        for g in expanded:
            v[p, g] = np.exp(-d[p, g])
        v[p] /= v[p].sum()
    v = np.array([v[ranking[p, :k2]].mean(axis=0) for p in range(n)])  # local query expansion

    out = np.empty(q_g.shape)
    for i in range(num_q):
        for j in range(q_g.shape[1]):
            a, b = v[i], v[num_q + j]
            jaccard = 1 - np.minimum(a, b).sum() / np.maximum(a, b).sum()
            out[i, j] = (1 - lambda_value) * jaccard + lambda_value * d[i, num_q + j]
    return out


def clustered_distances(seed, num_q=8, num_g=22, num_ids=6):
    """q_g, q_q, g_g Euclidean distances of features clustered by identity (non-trivial neighbour sets)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, num_ids, num_q + num_g)
    x = rng.normal(size=(num_ids, 8))[ids] + 0.7 * rng.normal(size=(num_q + num_g, 8))
    q, g = x[:num_q], x[num_q:]
    return cdist(q, g), cdist(q, q), cdist(g, g)


@pytest.mark.parametrize(("k1", "k2", "lambda_value"), [(20, 6, 0.3), (6, 3, 0.3), (7, 1, 0.5), (4, 9, 0.0)])
def test_matches_brute_force(k1, k2, lambda_value):
    for seed in range(3):
        dists = clustered_distances(seed)
        result = re_ranking(*dists, k1=k1, k2=k2, lambda_value=lambda_value)
        assert result.shape == (8, 22) and result.dtype == np.float32
        np.testing.assert_allclose(result, brute_force_re_ranking(*dists, k1, k2, lambda_value), atol=2e-6)


def test_jaccard_part_is_symmetric_in_query_and_gallery():
    q_g, q_q, g_g = clustered_distances(5)
    forward = re_ranking(q_g, q_q, g_g, k1=6, k2=3, lambda_value=0.0)
    swapped = re_ranking(q_g.T, g_g, q_q, k1=6, k2=3, lambda_value=0.0)
    np.testing.assert_allclose(forward, swapped.T, atol=1e-6)
    assert ((forward >= 0) & (forward <= 1)).all()


def test_gallery_order_does_not_matter_and_torch_is_accepted():
    q_g, q_q, g_g = clustered_distances(6)
    perm = np.random.default_rng(0).permutation(q_g.shape[1])
    expected = re_ranking(q_g, q_q, g_g, k1=6, k2=3)[:, perm]
    t = torch.from_numpy
    result = re_ranking(t(q_g[:, perm]), t(q_q), t(g_g[perm][:, perm]), k1=6, k2=3)
    np.testing.assert_allclose(result, expected, atol=1e-6)


def test_lambda_one_gives_the_normalised_squared_distance():
    q_g, q_q, g_g = clustered_distances(7)
    row_max = np.maximum(q_q.max(1), q_g.max(1))[:, None] ** 2
    np.testing.assert_allclose(re_ranking(q_g, q_q, g_g, k1=6, lambda_value=1.0), q_g**2 / row_max, rtol=1e-6)


@pytest.mark.parametrize(
    ("k1", "k2", "lambda_value", "name"),
    [(30, 6, 0.3, "k1=30"), (6, 0, 0.3, "k2=0"), (6, 3, 1.5, "lambda_value=1.5")],
)
def test_rejects_bad_parameters(k1, k2, lambda_value, name):
    with pytest.raises(ConfigError, match=name):
        re_ranking(*clustered_distances(0), k1=k1, k2=k2, lambda_value=lambda_value)
