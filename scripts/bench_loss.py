"""Benchmark the batch-hard triplet loss against pytorch-metric-learning on the CPU.

Times forward + backward of `reid.losses.BatchHardTripletLoss` (the module used in training, statistics
included) beside pytorch-metric-learning's `BatchHardMiner` + `TripletMarginLoss(reducer=MeanReducer())`,
once with the same (unnormalised) Euclidean distance as ours and once with PML's default distance, which
L2-normalises the embeddings first, and beside a floor: the (B, B) matmul without a graph plus one backward
call, which any eager PyTorch implementation of the loss pays. The candidates run interleaved, in a
rotating order, and each cell is the median over the repetitions. Then it measures the peak extra memory
of ours at B=8192 in a fresh process.

    python scripts/bench_loss.py [--repeats 9] [--threads 2]

On a CPU shared with other jobs, several threads can stall at every parallel region waiting for a descheduled
thread, which swamps the numbers; `--threads 1` then gives the stable comparison.
"""

import argparse
import statistics
import subprocess
import sys
import time

import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import TripletMarginLoss
from pytorch_metric_learning.miners import BatchHardMiner
from pytorch_metric_learning.reducers import MeanReducer

from reid.losses import BatchHardTripletLoss

SHAPES = [(120, 2), (128, 128), (512, 128), (2048, 128), (2048, 256)]
MARGIN = 0.2
K = 4  # images per identity: a batch is B / K identities x K

# A fresh interpreter: writing 5 to /proc/self/clear_refs resets its peak resident set size (VmHWM) to the
# current one (Linux), so the peak is measured from just before the loss runs.
MEMORY_CHILD = """
import sys, torch
from reid.losses import batch_hard_triplet_loss
B, D, K = (int(a) for a in sys.argv[1:4])
torch.set_num_threads(int(sys.argv[4]))
def kib(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key + ":"))
def step(b):
    x = torch.randn(b, D, requires_grad=True)
    batch_hard_triplet_loss(x, torch.arange(b // K).repeat_interleave(K), 0.2).backward()
step(64)  # load the kernels and start the thread pool first
x = torch.randn(B, D, requires_grad=True)
labels = torch.arange(B // K).repeat_interleave(K)
open("/proc/self/clear_refs", "w").write("5")
before = kib("VmRSS")
batch_hard_triplet_loss(x, labels, 0.2).backward()
print((kib("VmHWM") - before) * 1024 / (4 * B * B))
"""


def pml_loss(normalize: bool):
    """PML's batch-hard triplet loss: (embeddings, labels) -> loss."""
    distance = LpDistance(normalize_embeddings=normalize)
    miner = BatchHardMiner(distance=distance)
    loss = TripletMarginLoss(MARGIN, distance=distance, reducer=MeanReducer())
    return lambda embeddings, labels: loss(embeddings, labels, miner(embeddings, labels))


def floor(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The least a batch-hard loss costs in eager PyTorch: the score matrix and a backward call."""
    with torch.no_grad():
        (embeddings @ embeddings.T).amax(1)
    return embeddings.sum()


def time_candidates(candidates: dict, B: int, D: int, repeats: int) -> dict[str, float]:
    """Median microseconds per forward + backward of each `loss_fn(embeddings, labels)`, interleaved."""
    generator = torch.Generator().manual_seed(B * 1000 + D)
    embeddings = torch.randn(B, D, generator=generator, requires_grad=True)
    labels = torch.arange(B // K).repeat_interleave(K)

    def step(loss_fn):
        embeddings.grad = None
        loss = loss_fn(embeddings, labels)
        (loss[0] if isinstance(loss, tuple) else loss).backward()

    calls = {}
    for name, loss_fn in candidates.items():  # warm up, and size each timed block to about 20 ms
        start = time.perf_counter()
        step(loss_fn)
        step(loss_fn)
        calls[name] = max(1, int(0.02 / ((time.perf_counter() - start) / 2)))
    samples = {name: [] for name in candidates}
    names = list(candidates)
    for rep in range(repeats):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            start = time.perf_counter()
            for _ in range(calls[name]):
                step(candidates[name])
            samples[name].append((time.perf_counter() - start) / calls[name] * 1e6)
    return {name: statistics.median(times) for name, times in samples.items()}


def peak_memory(B: int, D: int, threads: int) -> float:
    """Peak extra resident memory of one forward + backward of ours, in units of B^2 float32 values."""
    args = [sys.executable, "-c", MEMORY_CHILD, str(B), str(D), str(K), str(threads)]
    return float(subprocess.run(args, check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="interleaved timed blocks per candidate")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    candidates = {
        "ours": BatchHardTripletLoss(MARGIN),
        "pml": pml_loss(False),
        "pml-norm": pml_loss(True),
        "floor": floor,
    }
    print(
        f"torch {torch.__version__}, {args.threads} threads, {args.repeats} repeats, P x {K} batches, "
        f"margin {MARGIN}; microseconds per forward + backward (median)"
    )
    print("pml: BatchHardMiner + TripletMarginLoss(reducer=MeanReducer()), unnormalised LpDistance (= ours)")
    print("pml-norm: the same with PML's default LpDistance, which L2-normalises the embeddings")
    print("floor: the (B, B) matmul without a graph + one backward call, the least an eager loss pays\n")
    print(
        f"{'B':>5} {'D':>4} {'ours':>9} {'pml':>9} {'pml-norm':>9} {'floor':>9} "
        f"{'ours/pml':>9} {'ours/pml-norm':>14} {'floor/pml':>10}"
    )
    for B, D in SHAPES:
        t = time_candidates(candidates, B, D, args.repeats)
        print(
            f"{B:>5} {D:>4} {t['ours']:>9.0f} {t['pml']:>9.0f} {t['pml-norm']:>9.0f} {t['floor']:>9.0f} "
            f"{t['ours'] / t['pml']:>9.3f} {t['ours'] / t['pml-norm']:>14.3f} {t['floor'] / t['pml']:>10.3f}",
            flush=True,
        )

    B, D = 8192, 128
    print(f"\npeak extra memory of ours at B={B}, D={D}: {peak_memory(B, D, args.threads):.2f} x B^2 float32")
    print("(a fresh process allocates the inputs and warms up, resets its peak resident set size through")
    print(" /proc/self/clear_refs, runs one forward + backward and reports VmHWM - VmRSS before; each (B, B)")
    print(" buffer is 256 MiB, which glibc maps on allocation and unmaps on release, so the resident size")
    print(" follows the live tensors)")


if __name__ == "__main__":
    main()
