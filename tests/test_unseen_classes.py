"""Unseen-class retrieval metrics against pytorch-metric-learning's AccuracyCalculator and brute force."""

import numpy as np
import pytest
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from reid.errors import DataError
from reid.retrieval.distances import euclidean_distances
from reid.retrieval.neighbours import stable_top_k
from reid.retrieval.unseen_classes import cluster_labels, leave_one_out, unseen_class_metrics

PML_KEYS = {"precision_at_1": "recall_at_1", "mean_average_precision_at_r": "map_at_r"}
PML_KEYS |= {"r_precision": "r_precision", "NMI": "nmi"}


def stable_knn(query, k, reference, ref_includes_query):
    """A PML knn_func: exact Euclidean neighbours in a stable order (ties by index), self removed as PML
    removes it. PML's default (faiss) breaks ties in its own order, so tied data uses this one."""
    dist = euclidean_distances(query, reference).cpu().numpy()
    order = torch.from_numpy(np.argsort(dist, axis=1, kind="stable"))
    if ref_includes_query:
        order = order[order != torch.arange(len(query))[:, None]].reshape(len(query), -1)
    order = order[:, :k]
    return torch.gather(torch.from_numpy(dist), 1, order), order


def seeded_kmeans(x, k):
    """A PML kmeans_func clustering as ours does, so NMI compares the same clustering."""
    return torch.from_numpy(cluster_labels(x.cpu().numpy(), k, seed=0))


def pml_metrics(x: torch.Tensor, y: torch.Tensor, knn_func=None) -> dict[str, float]:
    calculator = AccuracyCalculator(
        include=tuple(PML_KEYS), device=torch.device("cpu"), knn_func=knn_func, kmeans_func=seeded_kmeans
    )
    return {PML_KEYS[k]: v for k, v in calculator.get_accuracy(x, y).items()}


def brute_recall(x: torch.Tensor, y: np.ndarray, k: int) -> float:
    dist = euclidean_distances(x).numpy()
    hits, counted = 0, 0
    for i in range(len(y)):
        if np.count_nonzero(y == y[i]) < 2:
            continue  # alone in its class: no query, as in PML
        others = [j for j in np.argsort(dist[i], kind="stable") if j != i][:k]
        hits += any(y[j] == y[i] for j in others)
        counted += 1
    return hits / counted


def clustered_with_ties(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Classes of points around centres, with exact duplicates (tied distances) and a singleton class."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(6), rng.integers(2, 9, size=6))
    x = rng.normal(size=(6, 4))[labels] * 2 + rng.normal(size=(len(labels), 4))
    x[1::3] = x[0::3][: len(x[1::3])]  # every third point duplicates its neighbour: ties across classes
    x = np.vstack([x, rng.normal(size=(1, 4))])
    labels = np.append(labels, 99)  # a class of one: not a query
    return torch.from_numpy(x).float(), torch.from_numpy(labels)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_embeddings_equal_pml_with_its_own_neighbours(seed):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.normal(size=(60, 8))).float()
    y = torch.from_numpy(rng.integers(0, 7, size=60))
    ours = unseen_class_metrics(x, y)
    for key, value in pml_metrics(x, y).items():  # faiss neighbours: no ties in random data
        assert ours[key] == pytest.approx(value, abs=1e-12), key
    assert ours["num_query"] == 60


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tied_clusters_equal_pml_and_brute_force_recall(seed):
    x, y = clustered_with_ties(seed)
    ours = unseen_class_metrics(x, y, ks=(1, 2, 4, 8))
    for key, value in pml_metrics(x, y, knn_func=stable_knn).items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key
    for k in (1, 2, 4, 8):
        assert ours[f"recall_at_{k}"] == pytest.approx(brute_recall(x, y.numpy(), k), abs=1e-12)
    assert ours["num_query"] == len(y) - 1


def test_well_separated_classes_score_one():
    y = torch.arange(5).repeat_interleave(4)
    x = torch.nn.functional.one_hot(y).float() * 10 + torch.randn(20, 5) * 0.01
    metrics = unseen_class_metrics(x, y)
    assert all(metrics[k] == pytest.approx(1.0) for k in ("recall_at_1", "map_at_r", "r_precision", "nmi"))


def test_hand_checked_ranking():
    """Points on a line 0, 1, 3, 6 with labels a a b a: query 0 ranks 1(a) 3(b) 6(a), R = 2, AP@R = 1/2."""
    x = torch.tensor([[0.0], [1.0], [3.0], [6.0]])
    result = leave_one_out(x, [0, 0, 1, 0], keep=3)
    assert result.neighbours[0].tolist() == [1, 2, 3] and result.distances[0].tolist() == [1, 3, 6]
    assert result.ap_at_r[0] == pytest.approx(0.5) and result.r_precision[0] == pytest.approx(0.5)
    assert np.isnan(result.ap_at_r[2]) and result.found_within.tolist() == [1, 1, 0, 2]


def test_stable_top_k_is_a_stable_argsort():
    rng = np.random.default_rng(0)
    dist = rng.integers(-3, 4, size=(7, 30)).astype(np.float32)  # many ties, negatives, -0.0
    dist[0, 5] = -0.0
    assert (stable_top_k(dist, 9) == np.argsort(dist, axis=1, kind="stable")[:, :9]).all()


def test_no_pairs_is_a_clear_error():
    with pytest.raises(DataError, match="alone in its class"):
        unseen_class_metrics(torch.randn(4, 2), torch.arange(4))
