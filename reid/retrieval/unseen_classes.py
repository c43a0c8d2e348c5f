"""Retrieval metrics for test classes never seen in training (CUB-200, Stanford Online Products, own data).

Every test image queries all the others (itself excluded), ranked by Euclidean distance, ties in index
order. Definitions (Musgrave et al. 2020, "A Metric Learning Reality Check"), for a query of class c with
R = (images of c) - 1 other images of its class:

- recall_at_k: the share of queries with at least one image of their class among their k nearest.
- map_at_r: the mean over queries of (1/R) sum_{i<=R} P(i) rel(i), P(i) the precision at rank i and
  rel(i) whether rank i is of the query's class.
- r_precision: the mean over queries of (images of their class among their R nearest) / R.
- nmi: normalised mutual information between the classes and a k-means clustering of all test
  embeddings into as many clusters as there are classes (sklearn's KMeans, seeded).

Queries alone in their class (R = 0) are left out of the retrieval metrics, as pytorch-metric-learning
leaves them out; `num_query` counts the queries that remain. With a query set equal to the reference set
(`ref_includes_query=True`), `AccuracyCalculator` gives the same map_at_r, r_precision and
precision_at_1 (= recall_at_1) on the same neighbours, and the same nmi on the same clustering
(tests/test_unseen_classes.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score
from torch import Tensor

from reid.errors import DataError
from reid.retrieval.distances import euclidean_distances
from reid.retrieval.neighbours import stable_top_k

DEFAULT_KS = (1, 2, 4, 8)


@dataclass(frozen=True)
class LeaveOneOut:
    """Per-query results of leave-one-out retrieval over N images.

    neighbours: (N, M) indices of each query's M nearest other images, nearest first.
    distances: (N, M) their Euclidean distances.
    ap_at_r, r_precision: (N,) float64, NaN for queries alone in their class.
    found_within: (N,) rank (1-based) of the first image of the query's class, 0 when none is within M.
    """

    neighbours: np.ndarray
    distances: np.ndarray
    ap_at_r: np.ndarray
    r_precision: np.ndarray
    found_within: np.ndarray


def leave_one_out(embeddings: Tensor, labels, keep: int, chunk_size: int = 256) -> LeaveOneOut:
    """Rank every image against all the others; keep its `keep` nearest and its AP@R and R-precision.

    Memory stays at chunk_size x N distances plus chunk_size x max(keep, largest R) neighbours.

    Args:
        embeddings: (N, D) float tensor.
        labels: (N,) integers (tensor or array).
        keep: neighbours returned per query (cut to N - 1).
    """
    x = torch.as_tensor(embeddings).detach().float().cpu()
    labels = np.asarray(torch.as_tensor(labels).cpu(), dtype=np.int64)
    if len(labels) != len(x):
        raise DataError(f"{len(x)} embeddings but {len(labels)} labels: each image needs one label.")
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    r = counts[inverse] - 1
    keep = min(keep, len(labels) - 1)
    depth = min(max(keep, int(r.max(initial=0))), len(labels) - 1)
    parts = [_chunk(x, labels, r, q, keep, depth) for q in _chunks(len(labels), chunk_size)]
    return LeaveOneOut(*(np.concatenate(column) for column in zip(*parts, strict=True)))


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _chunk(x: Tensor, labels: np.ndarray, r: np.ndarray, q: slice, keep: int, depth: int) -> tuple:
    """`LeaveOneOut` fields of the query rows q: each row ranks the others to `depth` places."""
    dist = euclidean_distances(x[q], x).numpy()
    rows = np.arange(q.stop - q.start)
    dist[rows, rows + q.start] = np.inf  # the query itself: last, never within N - 1 places
    nearest = stable_top_k(dist, depth)
    same = labels[nearest] == labels[q, None]  # (C, depth)
    r_q = r[q]
    within_r = same & (np.arange(depth) < r_q[:, None])
    precision = np.cumsum(within_r, axis=1) / np.arange(1, depth + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap_at_r = np.where(r_q > 0, (precision * within_r).sum(1) / r_q, np.nan)
        r_precision = np.where(r_q > 0, within_r.sum(1) / r_q, np.nan)
    first = np.where(same.any(1), same.argmax(1) + 1, 0)
    shown = nearest[:, :keep]
    return shown, np.take_along_axis(dist, shown, 1), ap_at_r, r_precision, first


def cluster_labels(embeddings: np.ndarray, num_clusters: int, seed: int = 0) -> np.ndarray:
    """k-means cluster (N,) of each embedding (N, D): sklearn's KMeans, k-means++ started once from `seed`."""
    return KMeans(n_clusters=num_clusters, n_init=1, random_state=seed).fit_predict(embeddings)


def unseen_class_metrics(
    embeddings: Tensor,
    labels,
    ks: Sequence[int] = DEFAULT_KS,
    nmi: bool = True,
    seed: int = 0,
    ranked: LeaveOneOut | None = None,
) -> dict[str, float]:
    """`recall_at_{k}` for each k in `ks`, `map_at_r`, `r_precision`, `nmi` (when asked) and `num_query`
    of the (N, D) embeddings and (N,) labels; see the module docstring for the definitions.

    `ranked`: their `leave_one_out` with `keep` >= max(ks), when the caller has it already.
    """
    labels = np.asarray(torch.as_tensor(labels).cpu(), dtype=np.int64)
    result = ranked if ranked is not None else leave_one_out(embeddings, labels, keep=max(ks))
    valid = ~np.isnan(result.ap_at_r)
    if not valid.any():
        raise DataError(
            f"Every one of the {len(labels)} test images is alone in its class, so no query has a true "
            "match: unseen-class retrieval needs at least two images of some test classes."
        )
    found = result.found_within[valid]
    metrics = {f"recall_at_{k}": float(np.mean((found > 0) & (found <= k))) for k in ks}
    metrics["map_at_r"] = float(result.ap_at_r[valid].mean())
    metrics["r_precision"] = float(result.r_precision[valid].mean())
    if nmi:
        x = torch.as_tensor(embeddings).detach().float().cpu().numpy()
        clusters = cluster_labels(x, len(np.unique(labels)), seed)
        metrics["nmi"] = float(normalized_mutual_info_score(labels, clusters))
    metrics["num_query"] = float(valid.sum())
    return metrics
