"""k-reciprocal re-ranking (Zhong et al., CVPR 2017): query-gallery distances refined by shared neighbours.

Written from the paper, with its neighbour sets and weight vectors kept sparse: the only dense (N, N)
data is what the caller passes in, read a block of rows at a time. Where the paper leaves a choice open
we follow the authors' code, so that results are comparable with published numbers:

- The "original distance" is the squared Euclidean distance (the paper's Mahalanobis form with M = I;
  the authors' code squares its input), divided by the largest value in its row. That makes
  exp(-d) weights and the lambda mix independent of the feature scale; the neighbours are unchanged.
- The k nearest neighbours of an item include the item itself: N(p, k) is its first k + 1 items.
- R(q, k1/2) uses round(k1 / 2); a candidate's set joins when its overlap with R(p, k1) is more than
  (the paper writes "at least") 2/3 of its size.
- Local query expansion averages V over the k2 nearest items, the item itself included.
"""

import numpy as np
import scipy.sparse as sp
import torch

from reid.errors import ConfigError

ROWS_PER_BLOCK = 1024  # rows of the joint distance matrix materialised at once (1024 x N float32)
PAIRS_PER_BLOCK = 1 << 22  # (query, gallery, shared entry) triples per Jaccard block, ~40 bytes each


def re_ranking(
    q_g_dist, q_q_dist, g_g_dist, k1: int = 20, k2: int = 6, lambda_value: float = 0.3
) -> np.ndarray:
    """Re-ranked (Q, G) float32 distances: (1 - lambda) * Jaccard distance + lambda * original distance.

    Query and gallery form one set of N = Q + G items. For item p, R(p, k1) holds the items that are among
    p's k1 nearest while p is among theirs; it grows by R(q, k1/2) of each member q whose set mostly
    lies inside it. V_p spreads weights exp(-d(p, g)) (summing to 1) over that set and is then averaged
    over p's k2 nearest neighbours. The Jaccard distance of p and g is 1 - sum(min(V_p, V_g)) /
    sum(max(V_p, V_g)). See the module docstring for the conventions.

    Args:
        q_g_dist: (Q, G) Euclidean distances, numpy or torch; plain, not squared (torchreid's
            `compute_distance_matrix` returns squared ones: pass their square root).
        q_q_dist: (Q, Q) and g_g_dist: (G, G) Euclidean distances within the query and gallery sets.
        k1: size of the k-reciprocal neighbourhoods (paper: 20).
        k2: neighbours averaged by the local query expansion; 1 turns it off (paper: 6).
        lambda_value: weight of the original distance, in [0, 1] (paper: 0.3).
    """
    joint = _JointDistances(*(_to_numpy(d) for d in (q_g_dist, q_q_dist, g_g_dist)))
    num_q, n = joint.num_q, joint.n
    _check_parameters(k1, k2, lambda_value, n)
    neighbours, row_max = joint.nearest(max(k1 + 1, k2))
    rows, cols = _expanded_reciprocal_sets(neighbours[:, : k1 + 1], neighbours[:, : round(k1 / 2) + 1])
    weights = np.exp(-joint.pairs(rows, cols) / row_max[rows])
    weights /= np.bincount(rows, weights=weights, minlength=n).astype(np.float32)[rows]
    v = sp.csr_matrix((weights, (rows, cols)), shape=(n, n))
    if k2 > 1:  # row p of `expansion` holds 1 / k2 at p's k2 nearest items
        average = np.full(n * k2, 1 / k2, dtype=np.float32)
        expansion = sp.csr_matrix((average, neighbours[:, :k2].ravel(), np.arange(0, n * k2 + 1, k2)), (n, n))
        v = expansion @ v
    dist = _jaccard_distances(v[:num_q], v[num_q:])
    for start in range(0, num_q, ROWS_PER_BLOCK):
        block = slice(start, start + ROWS_PER_BLOCK)
        original = np.square(joint.q_g[block], dtype=np.float32) / row_max[:num_q][block, None]
        dist[block] = (1 - lambda_value) * dist[block] + lambda_value * original
    return dist


class _JointDistances:
    """The (N, N) distance matrix of query + gallery, [[q_q, q_g], [q_g.T, g_g]], read without building it."""

    def __init__(self, q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray):
        num_q, num_g = q_g.shape
        if q_q.shape != (num_q, num_q) or g_g.shape != (num_g, num_g):
            raise ValueError(
                f"expected q_g_dist (Q, G), q_q_dist (Q, Q), g_g_dist (G, G); got {q_g.shape}, {q_q.shape}, "
                f"{g_g.shape}"
            )
        self.q_g, self.q_q, self.g_g = q_g, q_q, g_g
        self.num_q, self.n = num_q, num_q + num_g

    def squared_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop of the joint matrix, squared, as (stop - start, N) float32."""
        q, g = self.num_q, slice(max(start, self.num_q) - self.num_q, max(stop - self.num_q, 0))
        block = np.empty((stop - start, self.n), dtype=np.float32)
        n_q = max(min(stop, q) - start, 0)
        block[:n_q, :q], block[:n_q, q:] = self.q_q[start : start + n_q], self.q_g[start : start + n_q]
        block[n_q:, :q], block[n_q:, q:] = self.q_g[:, g].T, self.g_g[g]
        return np.square(block, out=block)

    def nearest(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each item's k nearest items (N, k) int32, nearest first (itself, normally), and its row maximum."""
        neighbours = np.empty((self.n, k), dtype=np.int32)
        row_max = np.empty(self.n, dtype=np.float32)
        for start in range(0, self.n, ROWS_PER_BLOCK):
            stop = min(start + ROWS_PER_BLOCK, self.n)
            block = torch.from_numpy(self.squared_rows(start, stop))
            row_max[start:stop] = block.max(1).values
            neighbours[start:stop] = block.topk(k, dim=1, largest=False).indices
        return neighbours, row_max

    def pairs(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Squared distances (M,) float32 of the item pairs (rows[m], cols[m])."""
        out = np.empty(len(rows), dtype=np.float32)
        q = self.num_q
        for row_in_q in (True, False):
            for col_in_q in (True, False):
                m = ((rows < q) == row_in_q) & ((cols < q) == col_in_q)
                r, c = rows[m] - (0 if row_in_q else q), cols[m] - (0 if col_in_q else q)
                if row_in_q:
                    out[m] = self.q_q[r, c] if col_in_q else self.q_g[r, c]
                else:
                    out[m] = self.q_g[c, r] if col_in_q else self.g_g[r, c]
        return np.square(out, out=out)


def _reciprocal(neighbours: np.ndarray) -> np.ndarray:
    """(N, k) mask: neighbours[p, a] is a k-reciprocal neighbour of p (p is among its own neighbours)."""
    return (neighbours[neighbours] == np.arange(len(neighbours))[:, None, None]).any(axis=2)


def _expanded_reciprocal_sets(near: np.ndarray, near_half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The expanded sets R*(p, k1) as (row, col) pairs, grouped by row, cols ascending and unique.

    Args:
        near: (N, k1 + 1) nearest items of each item; near_half: (N, round(k1 / 2) + 1).
    """
    n = len(near)
    sets = np.where(_reciprocal(near), near, -1)  # R(p, k1); -1 marks "not a member"
    half_sets = np.where(_reciprocal(near_half), near_half, -1)
    members = []
    for start in range(0, n, ROWS_PER_BLOCK):
        block = slice(start, start + ROWS_PER_BLOCK)
        candidate_sets = half_sets[near[block]]  # (B, k1 + 1, kh + 1): R(q, k1/2) of each neighbour q
        shared = (candidate_sets[..., None] == sets[block, None, None, :]).any(-1) & (candidate_sets >= 0)
        size = (candidate_sets >= 0).sum(-1)
        joins = (sets[block] >= 0) & (shared.sum(-1) > 2.0 / 3 * size)
        joined = np.where(joins[..., None], candidate_sets, -1).reshape(len(candidate_sets), -1)
        members.append(np.concatenate([sets[block], joined], axis=1))
    members = np.sort(np.concatenate(members), axis=1)
    members[:, 1:][members[:, 1:] == members[:, :-1]] = -1  # keep one of each
    rows, slots = np.nonzero(members >= 0)
    return rows, members[rows, slots].astype(np.int64)


def _jaccard_distances(v_q: sp.csr_matrix, v_g: sp.csr_matrix) -> np.ndarray:
    """(Q, G) float32 Jaccard distances 1 - sum(min) / sum(max) between rows of v_q (Q, N) and v_g (G, N).

    Rows sum to 1, so sum(max) = 2 - sum(min). sum(min) only gets terms where both rows have weight: each
    query entry (j, a) meets the gallery rows with weight in column j (a column-sparse copy of v_g), and
    min(a, b) is summed per (query, gallery) pair, a block of queries at a time.
    """
    num_q, num_g = v_q.shape[0], v_g.shape[0]
    v_g = v_g.tocsc()
    column_nnz = np.diff(v_g.indptr)
    entry_rows = np.repeat(np.arange(num_q), np.diff(v_q.indptr))
    pairs_per_entry = column_nnz[v_q.indices]
    pairs_per_query = np.bincount(entry_rows, weights=pairs_per_entry, minlength=num_q)
    out = np.empty((num_q, num_g), dtype=np.float32)
    for start, stop in _blocks(pairs_per_query, PAIRS_PER_BLOCK, ROWS_PER_BLOCK):
        entries = slice(v_q.indptr[start], v_q.indptr[stop])
        counts = pairs_per_entry[entries]
        first = v_g.indptr[v_q.indices[entries]] - (np.cumsum(counts) - counts)
        taken = np.repeat(first, counts) + np.arange(counts.sum())  # positions in v_g's column arrays
        overlap = np.minimum(np.repeat(v_q.data[entries], counts), v_g.data[taken])
        cells = np.repeat(entry_rows[entries] - start, counts) * num_g + v_g.indices[taken]
        min_sum = np.bincount(cells, weights=overlap, minlength=(stop - start) * num_g).reshape(-1, num_g)
        out[start:stop] = np.maximum(1 - min_sum / (2 - min_sum), 0)  # rows sum to 1 up to rounding
    return out


def _blocks(costs: np.ndarray, budget: float, max_rows: int) -> list[tuple[int, int]]:
    """Consecutive (start, stop) row ranges of at most max_rows rows and `budget` total cost (or one row)."""
    cumulative = np.concatenate([[0], np.cumsum(costs)])
    bounds = [0]
    while bounds[-1] < len(costs):
        start = bounds[-1]
        stop = np.searchsorted(cumulative, cumulative[start] + budget, "right") - 1
        bounds.append(int(min(max(stop, start + 1), start + max_rows, len(costs))))
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _check_parameters(k1: int, k2: int, lambda_value: float, n: int) -> None:
    if not 1 <= k1 < n:
        raise ConfigError(
            f"re_ranking got k1={k1}, but the k-reciprocal neighbourhoods need 1 <= k1 < {n} (the number "
            "of query + gallery items): set reranking.k1 within that range (the paper uses 20)."
        )
    if not 1 <= k2 <= n:
        raise ConfigError(
            f"re_ranking got k2={k2}, but the query expansion averages over 1 to {n} (query + gallery "
            "items) neighbours: set reranking.k2 within that range (the paper uses 6; 1 turns it off)."
        )
    if not 0 <= lambda_value <= 1:
        raise ConfigError(
            f"re_ranking got lambda_value={lambda_value}, but it weighs the original distance against the "
            "Jaccard distance and must lie in [0, 1]: set reranking.lambda_value (the paper uses 0.3)."
        )


def _to_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
