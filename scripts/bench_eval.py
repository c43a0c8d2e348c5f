"""Benchmark the retrieval metrics and re-ranking on synthetic data of MARS size: time, memory, agreement.

Each case runs in a process of its own so that its peak RSS (resident memory, the whole process:
Python, torch and the inputs included) is its own; "RSS before" is the RSS just before the timed call.
Times are the best of a few runs for the fast cases. Features are identity centres plus noise
(D=128), the noise chosen so that mAP is moderate (about 0.5), as for a trained model. MARS-size
float32 distances have ties in every row: ours and torchreid's results agree exactly when ties keep
gallery order (a stable sort); torchreid's default argsort breaks them arbitrarily.

The peer for evaluate_rank is torchreid's Cython evaluation (`evaluate_cy`) when it can be imported,
that is when deep-person-reid was built from source. The PyPI package torchreid (0.2.5) does not ship
the Cython source, so otherwise the peer is a numpy port of torchreid's Python `eval_market1501`: an
argsort of every row, then a loop over the queries (the Cython code does the same, the loop in C). The
port vectorises torchreid's per-element Python list comprehension for AP, so it is faster than
torchreid's own Python code.

Usage:
    python scripts/bench_eval.py                  # all cases except the huge one
    python scripts/bench_eval.py --huge 100000    # also evaluate_features on 100,000 x 100,000
    python scripts/bench_eval.py --cases rank_ours rank_peer
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from reid.retrieval.ranking import (
    RankMetrics,
    euclidean_distances,
    feature_rank_metrics,
    knn_accuracy,
    leave_one_out_retrieval,
    rank_metrics,
)
from reid.retrieval.rerank import re_ranking

try:  # torchreid built from source (deep-person-reid); not part of the PyPI package
    from torchreid.retrieval.ranking.rank_cylib.rank_cy import evaluate_cy
except ImportError:
    evaluate_cy = None

MARS_QUERIES, MARS_GALLERY, TRACKLETS_PER_ID, DIM = 1980, 9330, 15, 128


def reid_problem(num_q: int, num_g: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """Query and gallery features (float32 tensors) and labels (q_pids, g_pids, q_camids, g_camids)."""
    rng = np.random.default_rng(seed)
    num_ids = max(num_g // TRACKLETS_PER_ID, 2)
    centres = rng.normal(size=(num_ids, DIM)).astype(np.float32)
    q_pids, g_pids = rng.integers(0, num_ids, num_q), rng.integers(0, num_ids, num_g)
    q_camids, g_camids = rng.integers(1, 7, num_q), rng.integers(1, 7, num_g)

    def features(pids: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(centres[pids] + 1.5 * rng.normal(size=(len(pids), DIM)).astype(np.float32))

    return features(q_pids), features(g_pids), (q_pids, g_pids, q_camids, g_camids)


def mars_distances() -> tuple[np.ndarray, tuple]:
    """MARS-size (1,980, 9,330) float32 distances and labels."""
    q, g, labels = reid_problem(MARS_QUERIES, MARS_GALLERY)
    return euclidean_distances(q, g).numpy(), labels


def torchreid_python_eval(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, kind="quicksort"):
    """torchreid's Python eval_market1501, ported: argsort each row, then a loop over the queries.

    torchreid uses numpy's default (unstable) argsort; kind="stable" orders ties by gallery index.
    """
    indices = np.argsort(distmat, axis=1, kind=kind)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap = [], []
    for q_idx in range(len(distmat)):
        order = indices[q_idx]
        remove = (g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx])
        raw_cmc = matches[q_idx][~remove]
        if not np.any(raw_cmc):
            continue
        cmc = raw_cmc.cumsum()
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        precision = raw_cmc.cumsum() / np.arange(1.0, len(raw_cmc) + 1)
        all_ap.append((precision * raw_cmc).sum() / raw_cmc.sum())
    return np.asarray(all_cmc).astype(np.float32).sum(0) / len(all_ap), np.mean(all_ap)


def best_of(repeats: int, fn: Callable) -> tuple[float, float, object]:
    """(best wall time in seconds, RSS in GB before the first run, result of the last run)."""
    times, before = [], rss_gb()
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), before, result


def agreement(cmc: np.ndarray, mAP: float, reference: RankMetrics) -> str:
    """Whether a peer's CMC and mAP equal ours."""
    return f"CMC equal: {np.array_equal(cmc, reference.cmc)}, mAP diff {abs(mAP - reference.mAP):.1e}"


CASES: dict[str, tuple[str, Callable[[int], tuple[float, float, str]]]] = {}


def case(name: str, what: str):
    """Register a case: a function of `huge` returning (seconds, RSS before in GB, note)."""

    def register(fn):
        CASES[name] = (what, fn)
        return fn

    return register


def retrieval_data() -> tuple[torch.Tensor, torch.Tensor]:
    """10,000 MNIST-like embeddings (D=64, 10 classes)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 10_000)
    x = 0.5 * rng.normal(size=(10, 64))[labels] + rng.normal(size=(10_000, 64))
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(labels)


@case("loo", "leave_one_out_retrieval, 10,000 x 10,000, D=64")
def run_loo(huge: int) -> tuple[float, float, str]:
    embeddings, labels = retrieval_data()
    seconds, before, result = best_of(3, lambda: leave_one_out_retrieval(embeddings, labels))
    return seconds, before, f"P@1 {result['precision_at_1']:.4f}, mAP {result['mAP']:.4f}"


@case("knn", "knn_accuracy k=5, 10,000 queries x 10,000 gallery")
def run_knn(huge: int) -> tuple[float, float, str]:
    embeddings, labels = retrieval_data()
    seconds, before, result = best_of(3, lambda: knn_accuracy(embeddings, labels, embeddings, labels, k=5))
    return seconds, before, f"accuracy {result:.4f}"


@case("rank_ours", "rank_metrics, MARS size 1,980 x 9,330 (distances given)")
def run_rank_ours(huge: int) -> tuple[float, float, str]:
    distmat, labels = mars_distances()
    seconds, before, result = best_of(5, lambda: rank_metrics(distmat, *labels))
    note = f"mAP {result.mAP:.4f}, rank-1 {result.cmc[0]:.4f}, {result.num_valid_query} valid queries"
    return seconds, before, note


@case("rank_peer", "peer: numpy port of torchreid's Python eval (argsort + loop)")
def run_rank_peer(huge: int) -> tuple[float, float, str]:
    distmat, labels = mars_distances()
    seconds, before, (cmc, mAP) = best_of(3, lambda: torchreid_python_eval(distmat, *labels))
    ours = rank_metrics(distmat, *labels)
    stable = agreement(*torchreid_python_eval(distmat, *labels, kind="stable"), ours)
    return seconds, before, f"{agreement(cmc, mAP, ours)}; with a stable argsort: {stable}"


@case("rank_cython", "peer: torchreid's Cython evaluate_cy (if importable)")
def run_rank_cython(huge: int) -> tuple[float, float, str]:
    if evaluate_cy is None:
        return float("nan"), float("nan"), "torchreid's Cython extension is not importable: skipped"
    distmat, labels = mars_distances()
    seconds, before, (cmc, mAP) = best_of(3, lambda: evaluate_cy(distmat, *labels, 50))
    return seconds, before, agreement(cmc, mAP, rank_metrics(distmat, *labels)) + " (float32 sums in Cython)"


@case("features_mars", "feature_rank_metrics, MARS size from features (D=128)")
def run_features_mars(huge: int) -> tuple[float, float, str]:
    q, g, labels = reid_problem(MARS_QUERIES, MARS_GALLERY)
    seconds, before, result = best_of(3, lambda: feature_rank_metrics(q, g, *labels))
    reference = rank_metrics(euclidean_distances(q, g), *labels)
    return seconds, before, agreement(result.cmc, result.mAP, reference)


@case("features_huge", "feature_rank_metrics, --huge N x N from features (D=128)")
def run_features_huge(huge: int) -> tuple[float, float, str]:
    q, g, labels = reid_problem(huge, huge)
    seconds, before, result = best_of(1, lambda: feature_rank_metrics(q, g, *labels))
    return seconds, before, f"{huge:,} x {huge:,}: mAP {result.mAP:.4f}, {result.num_valid_query} valid"


@case("rerank", "re_ranking k1=20 k2=6 lambda=0.3, MARS size 11,310 items (D=128)")
def run_rerank(huge: int) -> tuple[float, float, str]:
    q, g, labels = reid_problem(MARS_QUERIES, MARS_GALLERY)
    q_g, q_q, g_g = (euclidean_distances(a, b).numpy() for a, b in ((q, g), (q, q), (g, g)))
    seconds, before, distmat = best_of(1, lambda: re_ranking(q_g, q_q, g_g))
    plain, reranked = rank_metrics(q_g, *labels).mAP, rank_metrics(distmat, *labels).mAP
    return seconds, before, f"mAP {plain:.4f} -> {reranked:.4f} after re-ranking"


def rss_gb() -> float:
    """Current resident memory of this process in GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1e6
    return float("nan")


def run_case(name: str, huge: int) -> None:
    """Run one case in this process and print its row as JSON (the parent collects it)."""
    what, fn = CASES[name]
    seconds, before, note = fn(huge)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    row = {"case": name, "what": what, "seconds": seconds, "before": before, "peak": peak, "note": note}
    print(json.dumps(row))


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), help="cases to run (default: all)")
    parser.add_argument("--huge", type=int, default=0, help="N of the N x N features_huge case (0: skip)")
    parser.add_argument("--one", choices=list(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return run_case(args.one, args.huge)

    names = args.cases or [name for name in CASES if name != "features_huge" or args.huge]
    print(f"torch threads: {torch.get_num_threads()}, Cython peer: {'yes' if evaluate_cy else 'no'}\n")
    print("| case | what | seconds | RSS before (GB) | peak RSS (GB) | result |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in names:
        command = [sys.executable, __file__, "--one", name, "--huge", str(args.huge)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            print(f"| {name} | failed | | | | {done.stderr.strip().splitlines()[-1]} |")
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"| {name} | {row['what']} | {row['seconds']:.3f} | {row['before']:.2f} | {row['peak']:.2f} "
            f"| {row['note']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
