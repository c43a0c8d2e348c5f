"""Nearest neighbours in a stable order: by distance, ties by index, the same rule as a stable sort.

Exact and linear per row: each float32 distance and its column index are packed into one int64 key, so
every key is distinct, `np.argpartition` finds the k smallest without tie ambiguity, and only those k
are sorted.
"""

import numpy as np


def ordered_keys(distances: np.ndarray) -> np.ndarray:
    """(C, G) int64 keys that order like (distance, column): float32 bits made monotone, index below them."""
    values = np.ascontiguousarray(distances, dtype=np.float32) + np.float32(0)  # -0.0 becomes 0.0
    bits = values.view(np.int32)
    bits = bits ^ ((bits >> 31) & np.int32(0x7FFFFFFF))  # negative floats: reverse their order
    return (bits.astype(np.int64) << 32) | np.arange(distances.shape[1], dtype=np.int64)


def stable_top_k(distances: np.ndarray, k: int) -> np.ndarray:
    """Column indices (C, k) of the k smallest distances of each row of (C, G), nearest first, ties in
    column order: `np.argsort(distances, kind="stable")[:, :k]`, without sorting whole rows."""
    k = min(k, distances.shape[1])
    if k == 0:
        return np.empty((len(distances), 0), dtype=np.int64)
    keys = ordered_keys(distances)
    part = np.argpartition(keys, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(keys, part, 1).argsort(1)
    return np.take_along_axis(part, order, 1)
