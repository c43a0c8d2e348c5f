"""Exact k-nearest-neighbour search of queries in a gallery too large for a (Q, G) distance matrix.

The gallery is streamed in chunks and the queries in batches: only one (query_batch, chunk_size) block of
Euclidean distances exists at a time (`reid.retrieval.distances.euclidean_distances`, so the distances are
those of every other part of the project). Each block's k nearest are merged into a running top k per
query. Ties are broken by gallery index, as a stable sort of each query's full distance row would.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from rich.progress import track
from torch import Tensor

from reid.errors import ConfigError
from reid.retrieval.distances import euclidean_distances


class Neighbours(NamedTuple):
    """The k nearest gallery items of each query, nearest first: `distances` (Q, k) float32 and `indices`
    (Q, k) int64 gallery rows (k = min(top_k, G))."""

    distances: np.ndarray
    indices: np.ndarray


def exact_search(
    queries,
    gallery,
    top_k: int = 10,
    chunk_size: int = 65536,
    query_batch: int = 512,
    progress: bool = False,
) -> Neighbours:
    """The `top_k` nearest gallery items (Euclidean) of each query, by exhaustive search.

    Memory is about 4 bytes x query_batch x chunk_size beyond the features (128 MB at the defaults).

    Args:
        queries: (Q, D) float features, numpy or torch (CPU).
        gallery: (G, D) float features.
        top_k: neighbours per query; more than G returns all G.
        chunk_size: gallery rows per block.
        query_batch: queries per block.
        progress: show a progress bar over the query batches.
    """
    for name, value in (("top_k", top_k), ("chunk_size", chunk_size), ("query_batch", query_batch)):
        if value < 1:
            raise ConfigError(f"{name}={value}: use 1 or more.")
    queries = torch.as_tensor(queries, dtype=torch.float32)
    gallery = torch.as_tensor(gallery, dtype=torch.float32)
    k = min(top_k, len(gallery))
    distances = np.empty((len(queries), k), dtype=np.float32)
    indices = np.empty((len(queries), k), dtype=np.int64)
    batches = range(0, len(queries), query_batch)
    for start in track(batches, "Searching", disable=not progress):
        batch = slice(start, start + query_batch)
        best_d, best_i = _search_batch(queries[batch], gallery, k, chunk_size)
        distances[batch], indices[batch] = best_d.numpy(), best_i.numpy()
    return Neighbours(distances, indices)


def _search_batch(queries: Tensor, gallery: Tensor, k: int, chunk_size: int) -> tuple[Tensor, Tensor]:
    """(B, k) distances and gallery indices of the nearest k of B queries, one gallery chunk at a time."""
    best_d = torch.empty(len(queries), 0)
    best_i = torch.empty(len(queries), 0, dtype=torch.int64)
    for start in range(0, len(gallery), chunk_size):
        block = euclidean_distances(queries, gallery[start : start + chunk_size])
        chunk_d, chunk_i = block_top_k(block, k)
        del block  # before the next block exists: one block of distances at a time
        # The running best come from earlier chunks, so their indices are smaller: a stable sort of the
        # concatenation by distance keeps ties in gallery order.
        merged_d = torch.cat([best_d, chunk_d], 1)
        merged_i = torch.cat([best_i, chunk_i + start], 1)
        order = merged_d.sort(dim=1, stable=True).indices[:, :k]
        best_d, best_i = merged_d.gather(1, order), merged_i.gather(1, order)
    return best_d, best_i


def block_top_k(block: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k smallest values of each row of `block` (B, C) and their columns, ascending, ties in column
    order: the first k of a stable sort of each row.

    `torch.topk` picks any of the items tied at the k-th value. It is asked for k + 1: the rare rows
    whose (k + 1)-th value equals the k-th (a tie across the cut) are sorted in full instead.
    """
    k = min(k, block.shape[1])
    values, cols = block.topk(min(k + 1, block.shape[1]), dim=1, largest=False, sorted=False)
    order = cols.sort(dim=1).indices  # column order, then a stable sort by value
    values, cols = values.gather(1, order), cols.gather(1, order)
    order = values.sort(dim=1, stable=True).indices
    values, cols = values.gather(1, order), cols.gather(1, order)
    if values.shape[1] > k:
        crowded = torch.nonzero(values[:, k] == values[:, k - 1]).flatten()
        values, cols = values[:, :k], cols[:, :k]
        if len(crowded):
            row_values, row_cols = block[crowded].sort(dim=1, stable=True)
            values[crowded], cols[crowded] = row_values[:, :k], row_cols[:, :k]
    return values, cols
