"""Verification statistics: how well one distance threshold tells same-identity pairs from different ones.

Score = -distance (closer means more alike), as sklearn's `roc_auc_score` / `roc_curve` take it:

- roc_auc: P(d_pos < d_neg) + P(d_pos = d_neg) / 2 over all (positive, negative) pairs of pairs.
- tar_at_far_<f>: the largest share of positive pairs accepted (distance <= t) by a threshold t that
  accepts at most a share f of negative pairs (the ROC curve's best TPR with FPR <= f).
- threshold: that t at FAR `far`: the largest observed distance accepted there.

Exact without holding all negative distances (a test set of 20,000 images has 2e8 pairs): the positive
pairs (same identity, few) are collected and sorted in a first pass; a second pass streams the negative
distances chunk by chunk, sorts each chunk and finds every positive's place in it by binary search (how
many negatives lie above it, and at or above it: the AUC's pair counts), and keeps only the smallest
floor(f x negatives) + 1 negatives, which fix every TAR at FAR <= f. Distances are histogrammed on the
way, for the figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from reid.errors import DataError
from reid.retrieval.distances import euclidean_distances

REPORTED_FARS = (1e-2, 1e-3)
NUM_BINS = 100
CHUNK_PAIRS = 16_000_000  # distances per chunk of `class_pair_statistics` (64 MB of float32)

# Chunks of candidate pairs: (distances (C, G), positive mask (C, G), negative mask (C, G)).
PairChunks = Callable[[], Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]]


def far_key(far: float) -> str:
    """Metric name of the TAR at `far`: 1e-2 -> "tar_at_far_1e-2"."""
    mantissa, exponent = f"{far:.0e}".split("e")
    return f"tar_at_far_{mantissa}e{int(exponent)}"


@dataclass(frozen=True)
class Verification:
    """Pair statistics and distance histograms (counts (B,) over `edges` (B + 1,)) of the counted pairs."""

    roc_auc: float
    tar_at_far: dict[float, float]
    far: float
    threshold: float
    num_positive: int
    num_negative: int
    edges: np.ndarray
    positive_counts: np.ndarray
    negative_counts: np.ndarray

    def metrics(self) -> dict[str, float]:
        """`roc_auc`, `tar_at_far_1e-2`, `tar_at_far_1e-3` and `threshold` (at `far`)."""
        values = {"roc_auc": self.roc_auc}
        values.update({far_key(f): self.tar_at_far[f] for f in REPORTED_FARS})
        values["threshold"] = self.threshold
        return values


def allowed_false_accepts(far: float, num_negative: int) -> int:
    """The most negatives that may be accepted at FAR `far`: the largest c with c / num_negative <= far."""
    count = min(math.floor(far * num_negative), num_negative)
    while count < num_negative and (count + 1) / num_negative <= far:
        count += 1
    while count > 0 and count / num_negative > far:
        count -= 1
    return count


def pair_statistics(chunks: PairChunks, far: float = 1e-3, num_bins: int = NUM_BINS) -> Verification:
    """`Verification` of the pairs that `chunks()` yields; `chunks` is called twice (see module docstring)."""
    fars = sorted({*REPORTED_FARS, far})
    positives, num_negative, top = [], 0, 0.0
    for dist, pos, neg in chunks():
        positives.append(dist[pos])
        num_negative += int(np.count_nonzero(neg))
        top = max(top, float(np.max(dist, where=pos | neg, initial=0.0)))
    positives = np.sort(np.concatenate(positives + [np.empty(0, np.float32)]).astype(np.float32))
    if len(positives) == 0 or num_negative == 0:
        raise DataError(
            f"Verification needs pairs of the same identity and of different identities; the test set has "
            f"{len(positives)} and {num_negative}. It needs at least two images of one identity and two "
            "identities."
        )
    allowed = {f: allowed_false_accepts(f, num_negative) for f in fars}
    smallest = np.empty(0, np.float32)
    n_keep = min(max(allowed.values()) + 1, num_negative)
    below = at_or_below = 0
    edges = np.linspace(0.0, top if top > 0 else 1.0, num_bins + 1)
    negative_counts = np.zeros(num_bins, dtype=np.int64)
    for dist, _, neg in chunks():
        values = np.sort(dist[neg].astype(np.float32))  # numpy's vectorised sort: cheaper than the searches
        first_not_below = np.searchsorted(values, positives, "left")  # negatives < each positive
        tied = first_not_below < len(values)
        tied[tied] = values[first_not_below[tied]] == positives[tied]  # rare: search those again
        first_above = first_not_below.copy()
        first_above[tied] = np.searchsorted(values, positives[tied], "right")
        below += int((len(values) - first_above).sum())  # pairs with pos < neg
        at_or_below += int((len(values) - first_not_below).sum())  # pairs with pos <= neg
        smallest = np.sort(np.concatenate([smallest, values[:n_keep]]))[:n_keep]
        negative_counts += _histogram(values, edges)
    roc_auc = (below + 0.5 * (at_or_below - below)) / (len(positives) * num_negative)
    tar, threshold = {}, math.nan
    for f in fars:
        tar[f], t = _operating_point(positives, smallest, allowed[f], num_negative)
        if f == far:
            threshold = t
    return Verification(
        roc_auc=float(roc_auc),
        tar_at_far=tar,
        far=far,
        threshold=threshold,
        num_positive=len(positives),
        num_negative=num_negative,
        edges=edges,
        positive_counts=_histogram(positives, edges),
        negative_counts=negative_counts,
    )


def _histogram(ascending: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """`np.histogram(ascending, edges)[0]` of sorted values no larger than edges[-1], by binary search."""
    bounds = np.searchsorted(ascending, edges, "left")
    bounds[-1] = len(ascending)  # the last bin includes its right edge
    return np.diff(bounds)


def _operating_point(
    positives: np.ndarray, smallest: np.ndarray, allowed: int, num_negative: int
) -> tuple[float, float]:
    """(TAR, threshold) when at most `allowed` negatives may be accepted; `smallest` holds the sorted
    smallest negatives, at least `allowed` + 1 of them unless every negative may be accepted."""
    if allowed >= num_negative:  # any threshold: accept everything
        return 1.0, float(max(positives[-1], smallest[-1]))
    first_refused = smallest[allowed]  # accepting it would accept more than `allowed` negatives
    accepted_pos = int(np.searchsorted(positives, first_refused, "left"))
    accepted_neg = int(np.searchsorted(smallest, first_refused, "left"))
    candidates = [positives[accepted_pos - 1]] if accepted_pos else []
    candidates += [smallest[accepted_neg - 1]] if accepted_neg else []
    threshold = max(candidates) if candidates else np.nextafter(first_refused, np.float32(-np.inf))
    return accepted_pos / len(positives), float(threshold)


def class_pair_statistics(
    embeddings: Tensor, labels, far: float = 1e-3, chunk_size: int | None = None
) -> Verification:
    """`pair_statistics` of all distinct pairs (i < j) of N labelled embeddings (N, D): same label = positive.

    Each chunk holds chunk_size x N distances (Euclidean; default: about `CHUNK_PAIRS` of them, since each
    chunk searches every positive once); every pair is counted once.
    """
    x = torch.as_tensor(embeddings).detach().float().cpu()
    y = np.asarray(torch.as_tensor(labels).cpu(), dtype=np.int64)
    chunk_size = chunk_size or max(1, CHUNK_PAIRS // max(len(y), 1))

    def chunks():
        for start in range(0, len(y), chunk_size):
            stop = min(start + chunk_size, len(y))
            dist = euclidean_distances(x[start:stop], x[start:]).numpy()
            later = np.arange(start, len(y)) > np.arange(start, stop)[:, None]
            same = y[start:stop, None] == y[None, start:]
            yield dist, later & same, later & ~same

    return pair_statistics(chunks, far)


def query_gallery_pair_statistics(
    q_features: Tensor,
    g_features: Tensor,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    g_junk=None,
    far: float = 1e-3,
    distmat: np.ndarray | None = None,
    chunk_size: int = 512,
) -> Verification:
    """`pair_statistics` of the query-gallery pairs that re-ID ranking counts: junk gallery items and the
    query's own identity seen by its own camera are skipped; same pid = positive.

    Distances are Euclidean between the features, or `distmat` (Q, G) when given.
    """
    q_pids, q_camids = (np.asarray(torch.as_tensor(a).cpu()) for a in (q_pids, q_camids))
    g_pids, g_camids = (np.asarray(torch.as_tensor(a).cpu()) for a in (g_pids, g_camids))
    g_junk = np.zeros(len(g_pids), bool) if g_junk is None else np.asarray(g_junk, bool)
    q = torch.as_tensor(q_features).detach().float().cpu()
    g = torch.as_tensor(g_features).detach().float().cpu()

    def chunks():
        for start in range(0, len(q_pids), chunk_size):
            rows = slice(start, start + chunk_size)
            if distmat is None:
                dist = euclidean_distances(q[rows], g).numpy()
            else:
                dist = np.asarray(distmat[rows], dtype=np.float32)
            same_pid = q_pids[rows, None] == g_pids[None, :]
            counted = ~g_junk & ~(same_pid & (q_camids[rows, None] == g_camids[None, :]))
            yield dist, counted & same_pid, counted & ~same_pid

    return pair_statistics(chunks, far)
