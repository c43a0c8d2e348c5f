"""Benchmark search.py's two searches on a synthetic gallery: exact chunked search against the FAISS index.

Features are a mixture of Gaussians (D=128; identity centres plus noise, 20 items per identity), the
queries other draws of the gallery's identities. Exact search (`reid.retrieval.search.exact_search`) is
timed on `--exact-queries` of the queries (all of them by default) and, when that is fewer, scaled
linearly to all queries (its cost is linear in the number of queries); the table says so. Its memory is
the process's peak RSS (resident memory) during the search less the RSS before it: the blocks of
distances and the running top k, the features excluded. The FAISS index (`reid.retrieval.faiss_index`)
is built from the gallery's feature file in a temporary folder (time: k-means, adding the items and
calibrating nprobe), then searches all the queries; recall@10 is measured against the exact neighbours of
the queries exact search ran on.

Usage:
    python scripts/bench_search.py                                      # 1,000,000 x 10,000, D=128
    python scripts/bench_search.py --gallery 20000 --queries 1000      # a quick check
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from reid.retrieval.faiss_index import faiss_search, load_or_build_index, recall_at_k
from reid.retrieval.feature_files import FeatureSet, write_features
from reid.retrieval.search import exact_search

DIM, ITEMS_PER_ID = 128, 20


def clustered_features(
    n_gallery: int, n_queries: int, noise: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Gallery (G, D) and query (Q, D) float32 features of the same identities: unit-variance centres plus
    Gaussian noise of standard deviation `noise`."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(n_gallery // ITEMS_PER_ID, 2), DIM)).astype(np.float32)

    def draw(n: int) -> np.ndarray:
        points = centres[rng.integers(len(centres), size=n)]
        for start in range(0, n, 65536):  # in slices: no float64 copy of the whole gallery
            points[start : start + 65536] += rng.normal(
                scale=noise, size=(len(points[start : start + 65536]), DIM)
            )
        return points

    return draw(n_gallery), draw(n_queries)


def memory_mb(field: str) -> float:
    """`VmRSS` (resident memory now) or `VmHWM` (its peak) of this process from /proc, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak_rss() -> None:
    """Restarts the peak (`VmHWM`) from the current RSS (Linux: writing 5 to /proc/self/clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--gallery", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--exact-queries", type=int, default=None, help="queries timed for exact search")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--noise", type=float, default=0.8, help="spread of an identity (centres: 1)")
    args = parser.parse_args()
    exact_queries = min(args.exact_queries or args.queries, args.queries)
    gallery, queries = clustered_features(args.gallery, args.queries, args.noise)
    print(f"gallery {gallery.shape}, queries {queries.shape}, torch threads {torch.get_num_threads()}")

    reset_peak_rss()
    rss_before = memory_mb("VmRSS")
    start = time.perf_counter()
    exact = exact_search(queries[:exact_queries], gallery, args.top_k, progress=True)
    exact_s = (time.perf_counter() - start) * args.queries / exact_queries
    exact_mb = memory_mb("VmHWM") - rss_before

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gallery.npz"
        n = len(gallery)
        write_features(path, FeatureSet(gallery, np.arange(n).astype(str), np.full(n, -1), np.full(n, -1)))
        start = time.perf_counter()
        index, nprobe = load_or_build_index(path, gallery)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        found = faiss_search(index, nprobe, queries, gallery, args.top_k)
        faiss_s = time.perf_counter() - start
    recall = recall_at_k(found.indices[:exact_queries], exact.indices)

    scaled = f" (timed on {exact_queries} queries, scaled x{args.queries / exact_queries:g})"
    print(
        f"\n{args.queries} queries x {args.gallery} gallery items, D={DIM}, noise {args.noise}, "
        f"top {args.top_k}"
    )
    print(f"{'search':>34} {'build s':>9} {'search s':>9} {'speed-up':>9} {'recall@10':>10} {'extra MB':>9}")
    print(
        f"{'exact (chunks of 65536 x 512)':>34} {'-':>9} {exact_s:9.1f} {1:9.1f} {1:10.3f} {exact_mb:9.0f}"
        + (scaled if exact_queries < args.queries else "")
    )
    print(
        f"{f'FAISS IVF-Flat ({index.nlist} lists, nprobe {nprobe})':>34} {build_s:9.1f} {faiss_s:9.1f} "
        f"{exact_s / faiss_s:9.1f} {recall:10.3f} {'-':>9}"
    )


if __name__ == "__main__":
    main()
