"""Verification statistics against sklearn's roc_auc_score and roc_curve on the same pairs."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from reid.errors import DataError
from reid.retrieval.distances import euclidean_distances
from reid.retrieval.verification import (
    class_pair_statistics,
    far_key,
    pair_statistics,
    query_gallery_pair_statistics,
)


def sklearn_reference(distances: np.ndarray, positive: np.ndarray, far: float) -> tuple[float, float, float]:
    """(AUC, TAR at `far`, threshold) from sklearn with score = -distance, every threshold kept."""
    fpr, tpr, thresholds = roc_curve(positive, -distances, drop_intermediate=False)
    allowed = fpr <= far
    last = np.flatnonzero(allowed)[-1]  # tpr grows along the curve: the last allowed point is the best
    return roc_auc_score(positive, -distances), tpr[last], -thresholds[last]


def all_pairs(x: torch.Tensor, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dist = euclidean_distances(x).numpy()
    i, j = np.triu_indices(len(y), 1)
    return dist[i, j], y[i] == y[j]


@pytest.mark.parametrize("far", [1e-3, 1e-2, 0.05])
def test_class_pairs_match_sklearn(far):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 8, size=300)
    x = torch.from_numpy(rng.normal(size=(8, 6))[y] + rng.normal(size=(300, 6)) * 1.5).float()
    result = class_pair_statistics(x, y, far=far, chunk_size=64)  # several chunks
    distances, positive = all_pairs(x, y)
    auc, tar, threshold = sklearn_reference(distances, positive, far)
    assert result.roc_auc == pytest.approx(auc, abs=1e-12)
    assert result.tar_at_far[far] == pytest.approx(tar, abs=1e-12)
    assert result.threshold == pytest.approx(threshold, abs=0)
    for f in (1e-2, 1e-3):
        assert result.tar_at_far[f] == pytest.approx(sklearn_reference(distances, positive, f)[1], abs=1e-12)
    assert (result.num_positive, result.num_negative) == (positive.sum(), (~positive).sum())
    assert (
        result.positive_counts.sum() == positive.sum() and result.negative_counts.sum() == (~positive).sum()
    )


def test_ties_between_positives_and_negatives_match_sklearn():
    """Distances on a coarse grid: many positives and negatives share a value (AUC counts them half)."""
    rng = np.random.default_rng(1)
    dist = rng.integers(0, 12, size=(40, 50)).astype(np.float32)
    positive = rng.random((40, 50)) < 0.3

    def chunks():
        for start in range(0, 40, 7):
            rows = slice(start, start + 7)
            yield dist[rows], positive[rows], ~positive[rows]

    result = pair_statistics(chunks, far=0.1)
    auc, tar, threshold = sklearn_reference(dist.ravel(), positive.ravel(), 0.1)
    assert (result.roc_auc, result.tar_at_far[0.1], result.threshold) == pytest.approx((auc, tar, threshold))


def test_query_gallery_pairs_skip_junk_and_same_camera():
    rng = np.random.default_rng(2)
    q_pids, g_pids = rng.integers(0, 5, 30), np.append(rng.integers(0, 5, 80), [-1] * 10)
    q_cams, g_cams = rng.integers(0, 3, 30), rng.integers(0, 3, 90)
    q, g = torch.randn(30, 4), torch.randn(90, 4)
    junk = g_pids == -1
    result = query_gallery_pair_statistics(q, g, q_pids, g_pids, q_cams, g_cams, junk, far=0.01)
    dist = euclidean_distances(q, g).numpy()
    same = q_pids[:, None] == g_pids[None]
    counted = ~junk[None] & ~(same & (q_cams[:, None] == g_cams[None]))
    auc, tar, threshold = sklearn_reference(dist[counted], same[counted], 0.01)
    assert (result.roc_auc, result.tar_at_far[0.01], result.threshold) == pytest.approx((auc, tar, threshold))
    assert result.num_positive + result.num_negative == counted.sum()


def test_metric_names_and_perfect_separation():
    y = np.repeat(np.arange(4), 5)
    x = torch.from_numpy(np.eye(4)[y] * 10).float()
    metrics = class_pair_statistics(x, y).metrics()
    assert set(metrics) == {"roc_auc", "tar_at_far_1e-2", "tar_at_far_1e-3", "threshold"}
    assert far_key(1e-2) == "tar_at_far_1e-2"
    assert metrics["roc_auc"] == metrics["tar_at_far_1e-3"] == 1.0 and metrics["threshold"] == 0.0


def test_no_positive_pairs_is_a_clear_error():
    with pytest.raises(DataError, match="same identity"):
        class_pair_statistics(torch.randn(5, 2), np.arange(5))
