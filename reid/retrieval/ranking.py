"""Retrieval metrics: leave-one-out mAP and k-NN accuracy for labelled data, CMC and mAP for re-ID.

Everything works on query chunks so that memory stays bounded (a chunk of distances at a time) and
the chunks run on a thread pool. Ranks are found without ranking the whole gallery: each chunk's
distances are sorted by value (numpy's vectorised sort, several times faster than an argsort) and every
true match finds its place in its row by binary search; only the ranks of true matches are needed for
CMC and average precision.
"""

import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch
from rich.progress import track
from torch import Tensor

from reid.errors import ConfigError, DataError
from reid.retrieval.distances import euclidean_distances, row_ordered_distances

AP_RULES = ("step", "trapezoid")


class RankMetrics(NamedTuple):
    """Re-ID ranking results: `cmc` float32 (max_rank,), `mAP`, the number of queries averaged over, and
    `query_ap` (Q,) float64, each query's AP (NaN for a query without a true match), e.g. to show the
    worst queries first."""

    cmc: np.ndarray
    mAP: float
    num_valid_query: int
    query_ap: np.ndarray | None = None


def leave_one_out_retrieval(embeddings: Tensor, labels: Tensor, chunk_size: int = 1024) -> dict[str, float]:
    """Precision@1 and mAP when every item queries all the others (itself excluded), by Euclidean distance.

    The validation metric for class-labelled data such as MNIST. AP follows sklearn's
    `average_precision_score` with score = -distance: the mean over true matches of the precision at the
    match, items tied in distance counted together. mAP averages over the queries that have a match;
    precision@1 over all queries.

    Args:
        embeddings: (N, D) float tensor, any device.
        labels: (N,) integer tensor.
        chunk_size: queries per chunk; memory is about chunk_size x N distances per worker thread.
    """
    _check_chunk_size(chunk_size)
    _check_length("labels", labels, len(embeddings))
    embeddings = _float_features(embeddings)
    labels_np = _to_numpy(labels)
    index = _LabelIndex(labels_np)

    def run(start: int) -> tuple[int, np.ndarray]:
        q = slice(start, start + chunk_size)
        dist = row_ordered_distances(embeddings[q], embeddings).cpu().numpy()
        return _leave_one_out_chunk(dist, labels_np[q], index, start)

    hits, aps = 0, []
    for chunk_hits, chunk_aps in _map_threads(run, range(0, len(labels_np), chunk_size)):
        hits += chunk_hits
        aps.append(chunk_aps)
    aps = np.concatenate(aps)
    return {"precision_at_1": hits / len(labels_np), "mAP": float(aps.mean()) if len(aps) else 0.0}


def _leave_one_out_chunk(
    dist: np.ndarray, q_labels: np.ndarray, index: "_LabelIndex", offset: int
) -> tuple[int, np.ndarray]:
    """Top-1 hits and the APs of the queries with a match, for the query rows offset.. of dist (C, N)."""
    own = np.arange(len(dist))
    dist[own, own + offset] = np.inf  # the query itself sorts last and never counts
    hits = int(np.count_nonzero(index.labels[dist.argmin(1)] == q_labels))
    rows, cols = index.pairs(q_labels)
    others = cols != rows + offset
    rows, cols = rows[others], cols[others]
    values = dist[rows, cols]
    dist.sort(axis=1)
    aps = []
    for row, part in _row_slices(rows, len(dist)):
        v = np.sort(values[part])
        # Precision at a match counts every item (and every match) at most as far as the match.
        n_upto = np.searchsorted(dist[row], v, "right")
        matches_upto = np.searchsorted(v, v, "right")
        aps.append(np.mean(matches_upto / n_upto))
    return hits, np.asarray(aps, dtype=np.float64)


def knn_accuracy(
    q_embeddings: Tensor,
    q_labels: Tensor,
    g_embeddings: Tensor,
    g_labels: Tensor,
    k: int = 5,
    chunk_size: int = 1024,
) -> float:
    """Accuracy of a k-nearest-neighbour vote (Euclidean) that labels each query from the gallery.

    The vote is a plain majority of the k nearest gallery items, ties going to the smallest label, the
    same rule as sklearn's `KNeighborsClassifier(k, algorithm="brute")`.

    Args:
        q_embeddings, g_embeddings: (Q, D) and (G, D) float tensors on one device.
        q_labels, g_labels: (Q,) and (G,) integer tensors.
        k: neighbours that vote, 1 <= k <= G.
        chunk_size: queries per chunk.
    """
    _check_chunk_size(chunk_size)
    _check_length("q_labels", q_labels, len(q_embeddings))
    _check_length("g_labels", g_labels, len(g_embeddings))
    if not 1 <= k <= len(g_labels):
        raise ConfigError(
            f"knn_accuracy got k={k}, but a vote needs between 1 and the gallery size ({len(g_labels)}) "
            "neighbours: set k (for example metrics.knn_k) within that range."
        )
    q_embeddings, g_embeddings = _float_features(q_embeddings), _float_features(g_embeddings)
    classes, g_classes = torch.unique(g_labels.to(q_embeddings.device), return_inverse=True)
    q_labels = q_labels.to(q_embeddings.device)

    def run(start: int) -> int:
        q = slice(start, start + chunk_size)
        nearest = row_ordered_distances(q_embeddings[q], g_embeddings).topk(k, dim=1, largest=False).indices
        votes = torch.zeros(len(nearest), len(classes), device=nearest.device)
        votes.scatter_add_(1, g_classes[nearest], torch.ones_like(nearest, dtype=votes.dtype))
        return int((classes[votes.argmax(1)] == q_labels[q]).sum())  # argmax: first (smallest) class

    return sum(_map_threads(run, range(0, len(q_labels), chunk_size))) / len(q_labels)


def evaluate_rank(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank: int = 50,
    ap: str = "step",
    g_junk=None,
) -> tuple[np.ndarray, float]:
    """CMC (float32, (max_rank,)) and mAP of a query-gallery distance matrix: torchreid's signature.

    See `rank_metrics` for the rules; this keeps torchreid's two return values.
    """
    result = rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, ap, g_junk)
    return result.cmc, result.mAP


def rank_metrics(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank: int = 50,
    ap: str = "step",
    g_junk=None,
    chunk_size: int = 256,
) -> RankMetrics:
    """CMC, mAP and the number of valid queries of a (Q, G) distance matrix, as torchreid's Market-1501 eval.

    Per query the gallery is ranked by distance with ties kept in gallery order (a stable sort). Gallery
    items with the query's pid and camera are dropped, and so are junk items; a query left without a
    true match (same pid) is skipped. cmc[k] is the fraction of the remaining (valid) queries with a
    true match within the first k + 1 places. With ap="step" (torchreid, sklearn) AP is the mean over
    true matches of the precision at each match; ap="trapezoid" is the Market-1501/MARS MATLAB rule,
    ap += (recall - old_recall) * (old_precision + precision) / 2 along the list, old_precision from 1.
    Distances are compared in float32, as torchreid's Cython evaluation does.

    Args:
        distmat: (Q, G) distances, numpy or torch.
        q_pids, g_pids, q_camids, g_camids: (Q,), (G,) integer arrays.
        max_rank: length of the CMC curve; cut to G with a warning when the gallery is smaller.
        ap: "step" or "trapezoid".
        g_junk: optional (G,) bool mask of junk gallery items, which are skipped, take no place in the
            list and count for nothing (the MARS official protocol: `g_junk = g_pids == -1`).
        chunk_size: queries per chunk; memory is about 8 bytes x chunk_size x G per worker thread.
    """
    distmat = _to_numpy(distmat)
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be a (Q, G) matrix, got shape {distmat.shape}")

    def chunks() -> Iterator[tuple[slice, Callable[[], np.ndarray]]]:
        for start in range(0, len(distmat), chunk_size):
            q = slice(start, start + chunk_size)
            yield q, lambda q=q: distmat[q]

    return _rank_metrics(
        chunks(), distmat.shape, q_pids, g_pids, q_camids, g_camids, max_rank, ap, g_junk, chunk_size
    )


def evaluate_features(
    q_features,
    g_features,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank: int = 50,
    ap: str = "step",
    chunk_size: int = 256,
    progress: bool = False,
    g_junk=None,
) -> tuple[np.ndarray, float]:
    """CMC and mAP straight from features, for problems whose distance matrix would not fit in memory.

    Same results as `evaluate_rank(euclidean_distances(q, g), ...)`; see `feature_rank_metrics`.
    """
    result = feature_rank_metrics(
        q_features, g_features, q_pids, g_pids, q_camids, g_camids, max_rank, ap, chunk_size, progress, g_junk
    )
    return result.cmc, result.mAP


def feature_rank_metrics(
    q_features,
    g_features,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank: int = 50,
    ap: str = "step",
    chunk_size: int = 256,
    progress: bool = False,
    g_junk=None,
) -> RankMetrics:
    """`rank_metrics` of the Euclidean distances between (Q, D) and (G, D) features, a query chunk at a time.

    Only chunk_size x G distances exist at once per worker thread (100,000 x 100,000 at D=128 runs in
    well under 4 GB). Features may be numpy or torch on any device; distances are computed there.
    `progress=True` shows a progress bar over the chunks.
    """
    q_features, g_features = _float_features(q_features), _float_features(g_features)
    if q_features.ndim != 2 or g_features.ndim != 2 or q_features.shape[1] != g_features.shape[1]:
        raise ValueError(f"features must be (Q, D) and (G, D), got {q_features.shape} and {g_features.shape}")

    def chunks() -> Iterator[tuple[slice, Callable[[], np.ndarray]]]:
        for start in range(0, len(q_features), chunk_size):
            q = slice(start, start + chunk_size)
            yield q, lambda q=q: euclidean_distances(q_features[q], g_features).cpu().numpy()

    shape = (len(q_features), len(g_features))
    return _rank_metrics(
        chunks(), shape, q_pids, g_pids, q_camids, g_camids, max_rank, ap, g_junk, chunk_size, progress
    )


def _rank_metrics(
    chunks: Iterable[tuple[slice, Callable[[], np.ndarray]]],
    shape: tuple[int, int],
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank: int,
    ap: str,
    g_junk,
    chunk_size: int,
    progress: bool = False,
) -> RankMetrics:
    """Shared body of `rank_metrics` and `feature_rank_metrics`: chunks yield (query slice, distances)."""
    if ap not in AP_RULES:
        raise ConfigError(
            f"ap={ap!r} is not an average-precision rule: use 'step' (torchreid, sklearn: mean precision "
            "at each true match) or 'trapezoid' (the Market-1501/MARS MATLAB evaluation code)."
        )
    _check_chunk_size(chunk_size)
    num_q, num_g = shape
    q_pids, q_camids = _to_numpy(q_pids).astype(np.int64), _to_numpy(q_camids).astype(np.int64)
    g_pids, g_camids = _to_numpy(g_pids).astype(np.int64), _to_numpy(g_camids).astype(np.int64)
    for name, array, n in (("q_pids", q_pids, num_q), ("q_camids", q_camids, num_q)):
        _check_length(name, array, n)
    for name, array, n in (("g_pids", g_pids, num_g), ("g_camids", g_camids, num_g)):
        _check_length(name, array, n)
    g_junk = np.zeros(num_g, dtype=bool) if g_junk is None else _to_numpy(g_junk).astype(bool)
    _check_length("g_junk", g_junk, num_g)
    gallery = _Gallery(_LabelIndex(g_pids), g_camids, g_junk)
    if num_g < max_rank:
        warnings.warn(f"the gallery has only {num_g} items: max_rank cut from {max_rank}", stacklevel=3)
        max_rank = num_g

    def run(chunk: tuple[slice, Callable[[], np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        q, distances = chunk
        dist = np.asarray(distances(), dtype=np.float32)
        rows, ranks = _match_ranks(dist, q_pids[q], q_camids[q], gallery)
        first, aps = _query_scores(rows, ranks, len(dist), ap)
        row_aps = np.full(len(dist), np.nan)
        row_aps[np.unique(rows)] = aps
        return first, aps, row_aps

    n_chunks = -(-num_q // chunk_size)
    scores = list(track(_map_threads(run, chunks), "Ranking", total=n_chunks, disable=not progress))
    first = np.concatenate([f for f, _, _ in scores] + [np.empty(0, dtype=np.int64)])
    aps = np.concatenate([a for _, a, _ in scores] + [np.empty(0)])
    query_ap = np.concatenate([r for _, _, r in scores] + [np.empty(0)])
    if len(aps) == 0:
        raise DataError(
            f"None of the {num_q} queries has a true match in the gallery (same pid, another camera, not "
            "junk), so CMC and mAP are undefined: check that the query and gallery ids come from the "
            "same split and that the pids and camids arrays are in the order of the distance rows/columns."
        )
    hits = np.cumsum(np.bincount(np.minimum(first, max_rank), minlength=max_rank + 1)[:max_rank])
    cmc = hits.astype(np.float32) / np.float32(len(aps))
    return RankMetrics(cmc, float(np.mean(aps)), len(aps), query_ap)


class _LabelIndex:
    """Where each label occurs in a label array, to list same-label pairs without a (Q, N) comparison."""

    def __init__(self, labels: np.ndarray):
        self.labels = labels
        self.order = np.argsort(labels, kind="stable")
        self.sorted = labels[self.order]

    def pairs(self, q_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) of every pair with q_labels[row] == labels[col], grouped by row, cols ascending."""
        lo = np.searchsorted(self.sorted, q_labels, "left")
        counts = np.searchsorted(self.sorted, q_labels, "right") - lo
        rows = np.repeat(np.arange(len(q_labels)), counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        return rows, self.order[np.repeat(lo, counts) + offsets]


class _Gallery(NamedTuple):
    """Gallery labels: pids (indexed by `_LabelIndex`), camids and a junk mask, all (G,)."""

    pids: _LabelIndex
    camids: np.ndarray
    junk: np.ndarray

    def kept(self, q_pid: int, q_camid: int, cols: slice) -> np.ndarray:
        """Which gallery items in `cols` a query keeps: not junk, and not its own pid in its own camera."""
        return ((self.pids.labels[cols] != q_pid) | (self.camids[cols] != q_camid)) & ~self.junk[cols]


def _match_ranks(
    dist: np.ndarray, q_pids: np.ndarray, q_camids: np.ndarray, gallery: _Gallery
) -> tuple[np.ndarray, np.ndarray]:
    """The 0-based rank of every true match in its query's list: all that CMC and AP need.

    An item is dropped for a query when it has the query's pid and camera, or is junk. The rank of a
    match is its place among the kept items in a stable sort by distance: the kept items strictly
    closer, plus the kept items at the same distance that come earlier in the gallery (rare; counted
    directly). Dropped items become NaN, which sorts last and equals nothing.

    Args:
        dist: (C, G) float32 distances of C queries.
        q_pids, q_camids: (C,) labels of the queries.

    Returns:
        rows, ranks: one entry per true match, grouped by query row, ranks ascending within a row.
    """
    rows, cols = gallery.pids.pairs(q_pids)
    same_cam = gallery.camids[cols] == q_camids[rows]
    kept_sorted = dist.copy()
    kept_sorted[rows[same_cam], cols[same_cam]] = np.nan
    kept_sorted[:, gallery.junk] = np.nan
    match = ~same_cam & ~gallery.junk[cols]
    rows, cols = rows[match], cols[match]
    values = dist[rows, cols]
    kept_sorted.sort(axis=1)
    ranks = np.empty(len(rows), dtype=np.int64)
    for row, part in _row_slices(rows, len(dist)):
        v = values[part]
        closer = np.searchsorted(kept_sorted[row], v, "left")
        tied = np.searchsorted(kept_sorted[row], v, "right") - closer > 1  # another kept item, same value
        for t in np.flatnonzero(tied):
            earlier = slice(0, cols[part][t])
            kept = gallery.kept(q_pids[row], q_camids[row], earlier)
            closer[t] += np.count_nonzero((dist[row, earlier] == v[t]) & kept)
        ranks[part] = np.sort(closer)
    return rows, ranks


def _query_scores(rows: np.ndarray, ranks: np.ndarray, n_rows: int, ap: str) -> tuple[np.ndarray, np.ndarray]:
    """Rank of the first true match and AP of each query that has one, from `_match_ranks`' output."""
    n_match = np.bincount(rows, minlength=n_rows)
    valid = n_match > 0
    starts = np.cumsum(n_match) - n_match
    before = np.arange(len(rows)) - starts[rows]  # true matches ahead of this one
    precision = (before + 1) / (ranks + 1)
    if ap == "trapezoid":  # average with the precision one place earlier (1 at the top of the list)
        precision = (precision + np.where(ranks > 0, before / np.maximum(ranks, 1), 1.0)) / 2
    aps = np.bincount(rows, weights=precision, minlength=n_rows)[valid] / n_match[valid]
    return ranks[starts[valid]], aps


def _row_slices(rows: np.ndarray, n_rows: int) -> Iterator[tuple[int, slice]]:
    """(row, slice) for every row that occurs in the sorted array `rows`."""
    bounds = np.searchsorted(rows, np.arange(n_rows + 1))
    for row in np.flatnonzero(bounds[1:] > bounds[:-1]):
        yield int(row), slice(bounds[row], bounds[row + 1])


def _map_threads(fn: Callable, items: Iterable) -> Iterator:
    """`map(fn, items)` on one thread per torch thread: numpy's sorts and torch release the GIL."""
    with ThreadPoolExecutor(max_workers=torch.get_num_threads()) as pool:
        yield from pool.map(fn, items)


def _float_features(x) -> Tensor:
    """A detached float32 (or float64) tensor: half precision has too few bits to rank distances."""
    x = torch.as_tensor(x).detach()
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _to_numpy(x) -> np.ndarray:
    """A numpy view of a numpy array or (detached, CPU) torch tensor."""
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def _check_length(name: str, array, n: int) -> None:
    if len(array) != n:
        raise ValueError(f"{name} has {len(array)} entries, expected {n} (one per distance row/column)")


def _check_chunk_size(chunk_size: int) -> None:
    if chunk_size < 1:
        raise ConfigError(f"chunk_size={chunk_size}: it is the number of queries per chunk, use 1 or more.")
