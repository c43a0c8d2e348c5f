"""Metrics against slow, obviously-correct references: sklearn, and per-query loops over ranked lists."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from sklearn.metrics import average_precision_score
from sklearn.neighbors import KNeighborsClassifier

from reid.errors import ConfigError, DataError
from reid.retrieval.ranking import (
    euclidean_distances,
    evaluate_features,
    evaluate_rank,
    feature_rank_metrics,
    knn_accuracy,
    leave_one_out_retrieval,
    rank_metrics,
)


def reference_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, ap="step", g_junk=None):
    """torchreid's eval_market1501 query by query, sorting stably; ap='trapezoid': the MATLAB loop."""
    distmat = distmat.astype(np.float32)
    max_rank = min(max_rank, distmat.shape[1])
    all_cmc, all_ap = [], []
    for i, row in enumerate(distmat):
        order = np.argsort(row, kind="stable")
        keep = (g_pids[order] != q_pids[i]) | (g_camids[order] != q_camids[i])
        if g_junk is not None:
            keep &= ~g_junk[order]
        hits = g_pids[order][keep] == q_pids[i]
        if not hits.any():
            continue
        cmc = np.minimum(np.cumsum(hits), 1)
        all_cmc.append(np.concatenate([cmc, np.ones(max_rank)])[:max_rank])  # past the list: found
        if ap == "step":
            precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
            all_ap.append(precision[hits].mean())
        else:
            old_recall, old_precision, total = 0.0, 1.0, 0.0
            for position in range(len(hits)):
                recall = hits[: position + 1].sum() / hits.sum()
                precision = hits[: position + 1].sum() / (position + 1)
                total += (recall - old_recall) * (old_precision + precision) / 2
                old_recall, old_precision = recall, precision
            all_ap.append(total)
    cmc = np.asarray(all_cmc, dtype=np.float32).sum(0) / np.float32(len(all_ap))
    return cmc, np.mean(all_ap), len(all_ap)


def random_problem(rng, num_q=30, num_g=60, num_pids=12, num_cams=3, ties=False):
    """Distances (tie-free unless ties=True) and labels; some query pids are absent from the gallery."""
    if ties:
        distmat = rng.integers(0, 4, (num_q, num_g)).astype(np.float32)
    else:
        distmat = (rng.permutation(num_q * num_g).reshape(num_q, num_g) / (num_q * num_g)).astype(np.float32)
    q_pids, g_pids = rng.integers(0, num_pids + 3, num_q), rng.integers(0, num_pids, num_g)
    q_camids, g_camids = rng.integers(0, num_cams, num_q), rng.integers(0, num_cams, num_g)
    return distmat, q_pids, g_pids, q_camids, g_camids


def test_leave_one_out_matches_sklearn():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 6)), rng.integers(0, 6, 200)
    x[1], x[3] = x[0], x[0]  # exact ties in distance
    y[-1] = 99  # a query without any match: counts for precision@1, not for mAP
    result = leave_one_out_retrieval(torch.from_numpy(x), torch.from_numpy(y), chunk_size=37)

    dist = cdist(x, x)
    hits, aps = 0, []
    for i in range(len(x)):
        others = np.arange(len(x)) != i
        hits += y[others][np.argmin(dist[i, others])] == y[i]
        if (y[others] == y[i]).any():
            aps.append(average_precision_score(y[others] == y[i], -dist[i, others]))
    assert result["precision_at_1"] == pytest.approx(hits / len(x), abs=1e-12)
    assert result["mAP"] == pytest.approx(np.mean(aps), abs=1e-12)


@pytest.mark.parametrize("k", [1, 4, 5])
def test_knn_matches_sklearn(k):
    rng = np.random.default_rng(k)
    g, g_labels = rng.normal(size=(150, 5)), rng.integers(0, 5, 150)
    q, q_labels = rng.normal(size=(80, 5)), rng.integers(0, 5, 80)
    expected = KNeighborsClassifier(k, algorithm="brute").fit(g, g_labels).score(q, q_labels)
    t = torch.from_numpy
    assert knn_accuracy(t(q), t(q_labels), t(g), t(g_labels), k=k, chunk_size=33) == pytest.approx(expected)


def test_knn_rejects_k_larger_than_gallery():
    x, y = torch.zeros(3, 2), torch.zeros(3, dtype=torch.long)
    with pytest.raises(ConfigError, match="k=4"):
        knn_accuracy(x, y, x, y, k=4)


@pytest.mark.parametrize("ap", ["step", "trapezoid"])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("junk", [False, True])
def test_evaluate_rank_matches_reference_loop(ap, ties, junk):
    rng = np.random.default_rng(7)
    for _ in range(5):
        problem = random_problem(rng, ties=ties)
        g_junk = rng.random(problem[0].shape[1]) < 0.15 if junk else None
        expected_cmc, expected_map, expected_valid = reference_rank(*problem, 20, ap, g_junk)
        result = rank_metrics(*problem, max_rank=20, ap=ap, g_junk=g_junk, chunk_size=7)
        assert 0 < expected_valid < len(problem[0])  # some queries are skipped
        np.testing.assert_array_equal(result.cmc, expected_cmc)
        assert result.mAP == pytest.approx(expected_map, abs=1e-12)
        assert result.num_valid_query == expected_valid


def test_evaluate_rank_max_rank_beyond_gallery_warns_and_cuts():
    distmat, *labels = random_problem(np.random.default_rng(1), num_q=10, num_g=8, num_pids=3)
    with pytest.warns(UserWarning, match="only 8"):
        cmc, mAP = evaluate_rank(distmat, *labels, max_rank=50)
    expected_cmc, expected_map, _ = reference_rank(distmat, *labels, 50)
    assert cmc.shape == (8,) and cmc.dtype == np.float32
    np.testing.assert_array_equal(cmc, expected_cmc)
    assert mAP == pytest.approx(expected_map, abs=1e-12)


def test_evaluate_rank_hand_checked_example():
    # Query 0 (pid 1, camera 0); gallery in distance order: same pid and camera (dropped), other pid,
    # match, other pid, match. The kept list is [-, +, -, +]: the matches take places 2 and 4.
    # Query 1 (pid 9) has no match and is skipped.
    distmat = np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.4, 0.3, 0.2, 0.1]])
    q_pids, q_camids = np.array([1, 9]), np.array([0, 0])
    g_pids, g_camids = np.array([1, 2, 1, 3, 1]), np.array([0, 1, 1, 1, 2])
    step = rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=4)
    np.testing.assert_array_equal(step.cmc, [0, 1, 1, 1])
    assert step.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert step.num_valid_query == 1
    # Trapezoid: each match adds recall 1/2 times the mean of the precision before and at it.
    _, trapezoid = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=4, ap="trapezoid")
    assert trapezoid == pytest.approx(0.5 * (0 + 1 / 2) / 2 + 0.5 * (1 / 3 + 2 / 4) / 2)
    # Gallery item 1 as junk: it leaves the list, which becomes [+, -, +].
    junk = np.array([False, True, False, False, False])
    cmc, mAP = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=4, g_junk=junk)
    np.testing.assert_array_equal(cmc, [1, 1, 1, 1])
    assert mAP == pytest.approx((1 + 2 / 3) / 2)
    # A tie goes to the earlier gallery item: the other pid at 0.3 now comes before the match.
    distmat[0, 1] = 0.3
    cmc, _ = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=4)
    np.testing.assert_array_equal(cmc, [0, 1, 1, 1])
    distmat[0, 1], distmat[0, 3] = 0.2, 0.3  # and a later one after it: the match still comes second
    cmc, _ = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=4)
    np.testing.assert_array_equal(cmc, [0, 1, 1, 1])


def test_evaluate_rank_accepts_torch_and_checks_arguments():
    distmat, *labels = random_problem(np.random.default_rng(2))
    expected = evaluate_rank(distmat, *labels, max_rank=10)
    result = evaluate_rank(torch.from_numpy(distmat), *map(torch.from_numpy, labels), max_rank=10)
    np.testing.assert_array_equal(result[0], expected[0])
    assert result[1] == expected[1]
    with pytest.raises(ConfigError, match="ap='area'"):
        evaluate_rank(distmat, *labels, ap="area")
    q_pids, g_pids, q_camids, g_camids = labels
    with pytest.raises(DataError, match="None of the 30 queries"):
        evaluate_rank(distmat, q_pids + 1000, g_pids, q_camids, g_camids)


def test_evaluate_features_equals_evaluate_rank():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(15, 16))
    q_pids, g_pids = rng.integers(0, 15, 70), rng.integers(0, 15, 130)
    q = torch.from_numpy(centres[q_pids] + rng.normal(size=(70, 16))).float()
    g = torch.from_numpy(centres[g_pids] + rng.normal(size=(130, 16))).float()
    q_camids, g_camids = rng.integers(0, 4, 70), rng.integers(0, 4, 130)
    labels = (q_pids, g_pids, q_camids, g_camids)
    for ap in ("step", "trapezoid"):
        expected = rank_metrics(euclidean_distances(q, g), *labels, max_rank=20, ap=ap)
        result = feature_rank_metrics(q, g, *labels, max_rank=20, ap=ap, chunk_size=16, progress=True)
        np.testing.assert_array_equal(result.cmc, expected.cmc)
        assert result.mAP == expected.mAP and result.num_valid_query == expected.num_valid_query
    cmc, mAP = evaluate_features(q.numpy(), g.numpy(), *labels, max_rank=20, ap="trapezoid")
    np.testing.assert_array_equal(cmc, expected.cmc)
    assert mAP == expected.mAP


def test_euclidean_distances_match_scipy():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(20, 7)), rng.normal(size=(30, 7))
    np.testing.assert_allclose(euclidean_distances(torch.from_numpy(x), torch.from_numpy(y)), cdist(x, y))


@pytest.mark.parametrize("ap", ["step", "trapezoid"])
def test_query_ap_holds_each_query_s_ap_and_nan_without_a_true_match(ap):
    distmat, q_pids, g_pids, q_camids, g_camids = random_problem(np.random.default_rng(5), ties=True)
    result = rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids, ap=ap, chunk_size=7)
    for q in range(len(distmat)):
        has_match = np.any((g_pids == q_pids[q]) & (g_camids != q_camids[q]))
        if has_match:
            one = (distmat[q : q + 1], q_pids[q : q + 1], g_pids, q_camids[q : q + 1], g_camids)
            assert result.query_ap[q] == pytest.approx(reference_rank(*one, 50, ap)[1], abs=1e-12)
        else:
            assert np.isnan(result.query_ap[q])
    assert 0 < np.isnan(result.query_ap).sum() < len(distmat)
    assert np.nanmean(result.query_ap) == pytest.approx(result.mAP, abs=1e-12)
