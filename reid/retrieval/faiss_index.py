"""Approximate search for galleries of millions: a FAISS inverted-file index (IVF-Flat), kept next to the
gallery's feature file.

The index of `<folder>/<stem>.npz` is `<folder>/<stem>.faiss`, with `<stem>.faiss.json` recording what it
was built from (the feature file's size and sha256, N, D) and its settings. A later search reuses it while
the features are unchanged and rebuilds it when they changed. The gallery is cut into about 4 sqrt(N)
lists (k-means); a query scans the `nprobe` lists nearest to it. `nprobe` is calibrated at build time: the
smallest of 1, 2, 3, 4, 6, 9, 14, ... whose recall@10 against exact search, on gallery items used as
queries, reaches `target_recall` (0.96: a margin for new queries over the 0.95 the index promises).
FAISS (the `faiss-cpu` package) is an optional extra, imported only here.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from reid.errors import ConfigError
from reid.files import atomic_file, write_text
from reid.retrieval.search import Neighbours, exact_search

TARGET_RECALL = 0.96
CALIBRATION_QUERIES = 500
TRAINING_POINTS_PER_LIST = 64  # k-means samples per list: FAISS warns below 39
SEED = 0


def import_faiss():
    """The faiss module; a `ConfigError` saying how to install it when it is missing."""
    try:
        import faiss
    except ImportError:
        raise ConfigError(
            'index=faiss needs the faiss-cpu package: pip install -e ".[faiss]" (or use index=exact).'
        ) from None
    return faiss


def index_paths(features_path: str | Path) -> tuple[Path, Path]:
    """The index file and its JSON record for the feature file `features_path`."""
    path = Path(features_path)
    return path.with_suffix(".faiss"), path.with_suffix(".faiss.json")


def file_fingerprint(path: Path) -> dict[str, Any]:
    """The size and sha256 of a file: what an index records of the features it was built from."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 24):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def load_or_build_index(
    features_path: str | Path, features: np.ndarray, target_recall: float = TARGET_RECALL
):
    """The IVF index of the gallery `features` (N, D) read from `features_path`, and its `nprobe`.

    Reuses `<stem>.faiss` when its record matches the feature file; otherwise builds it, calibrates
    `nprobe`, and writes both files (atomically: an interrupted build leaves no index behind).
    """
    faiss = import_faiss()
    index_path, record_path = index_paths(features_path)
    source = {**file_fingerprint(Path(features_path)), "n": len(features), "dim": features.shape[1]}
    if index_path.is_file() and record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("source") == source:
            print(f"Reusing the FAISS index '{index_path}' (nprobe={record['nprobe']}).")
            return faiss.read_index(str(index_path)), record["nprobe"]
        print(f"The FAISS index '{index_path}' was built from other features: building it again.")
    # The calibration's queries are kept out of k-means: lists fitted to them would flatter the recall.
    order = np.random.default_rng(SEED).permutation(len(features))
    calibration, training = np.sort(order[:CALIBRATION_QUERIES]), np.sort(order[CALIBRATION_QUERIES:])
    index = build_index(features, training)
    nprobe = calibrate_nprobe(index, features, calibration, target_recall)
    with atomic_file(index_path) as file:
        faiss.write_index(index, faiss.PyCallbackIOWriter(file.write))  # streamed: no copy in memory
    record = {"source": source, "kind": "IVFFlat", "nlist": index.nlist, "nprobe": nprobe}
    write_text(record_path, json.dumps({**record, "target_recall": target_recall}, indent=2) + "\n")
    print(f"Wrote the FAISS index '{index_path}' ({index.nlist} lists, nprobe={nprobe}).")
    return index, nprobe


def build_index(features: np.ndarray, candidates: np.ndarray):
    """An IVF-Flat index (L2) of `features` (N, D): about 4 sqrt(N) lists, k-means trained on up to
    TRAINING_POINTS_PER_LIST rows a list drawn from the rows `candidates`."""
    faiss = import_faiss()
    features = np.ascontiguousarray(features, dtype=np.float32)
    n, dim = features.shape
    nlist = max(1, min(int(4 * math.sqrt(n)), len(candidates) // TRAINING_POINTS_PER_LIST))
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, nlist, faiss.METRIC_L2)
    index.cp.seed = SEED
    rng = np.random.default_rng(SEED)
    sample = rng.choice(candidates, min(len(candidates), nlist * TRAINING_POINTS_PER_LIST), replace=False)
    index.train(features[np.sort(sample)])
    index.add(features)
    return index


def calibrate_nprobe(
    index, features: np.ndarray, queries: np.ndarray, target_recall: float, k: int = 10
) -> int:
    """The smallest `nprobe` (1, 2, 3, 4, 6, 9, ...: steps of about 1.5) whose recall@k, for the gallery
    rows `queries` as queries (each one's own entry left out), reaches `target_recall` against exact
    search; all lists when none does."""
    sample = features[queries]
    k = min(k, len(features) - 1)
    exact = exact_search(sample, features, k + 1).indices[:, 1:]
    nprobe = 1
    while nprobe < index.nlist:
        index.nprobe = nprobe
        found = index.search(sample, k + 1)[1][:, 1:]
        if recall_at_k(found, exact) >= target_recall:
            return nprobe
        nprobe = max(nprobe + 1, round(nprobe * 1.5))
    return index.nlist


def faiss_search(index, nprobe: int, queries: np.ndarray, gallery: np.ndarray, top_k: int) -> Neighbours:
    """The `top_k` nearest (approximately) of each query (Q, D) in the indexed `gallery` (G, D): Euclidean
    distances, as `exact_search` gives. The rare queries whose probed lists hold fewer than top_k items are
    searched exactly."""
    index.nprobe = nprobe
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    squared, indices = index.search(queries, min(top_k, index.ntotal))
    distances = np.sqrt(np.maximum(squared, 0))
    short = np.flatnonzero((indices < 0).any(1))
    if len(short):
        distances[short], indices[short] = exact_search(queries[short], gallery, top_k)
    return Neighbours(distances, indices.astype(np.int64))


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """The fraction of the exact neighbours (Q, k) that were found (Q, k), in any order."""
    hits = sum(len(np.intersect1d(f, e)) for f, e in zip(found, exact, strict=True))
    return hits / exact.size
