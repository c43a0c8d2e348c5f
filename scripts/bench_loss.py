"""Benchmark the batch-hard triplet loss against pytorch-metric-learning on the CPU, alone and in a step.

Loss rows: forward + backward of ours (the module used in training, statistics included) beside
pytorch-metric-learning's `BatchHardMiner` + `TripletMarginLoss(reducer=MeanReducer())`, once with the same
(unnormalised) Euclidean distance as ours and once with PML's default distance, which L2-normalises the
embeddings first, and beside a floor: the (B, B) matmul without a graph plus one backward call, which any
eager PyTorch implementation of the loss pays.

Step rows: one training step (forward + loss + backward + Adam step) of the MNIST convnet (B=120, 10
classes x 12, 28x28 grey) and of LuNet (B=128, 32 x 4, 3x128x64) with our loss, with PML's loss, and with
the floor `embeddings.sum()` in place of a loss; each candidate trains its own copy of the model.

The candidates run interleaved: each round times every candidate once, in an order that rotates from round
to round. A time is the median over the rounds; a ratio is the median over the rounds of the two
candidates' ratio within a round, so that a burst of load from other jobs cancels out of it. Then it
measures the peak extra memory of ours at B=8192 in a fresh process.

    python scripts/bench_loss.py [--repeats 9] [--threads 2] [--step-repeats 7]
                                 [--lunet-repeats 3] [--lunet-batch 128]

LuNet's step takes tens of seconds on a small CPU: `--lunet-repeats 0` skips it, `--lunet-batch 32`
shrinks it (P x 4). On a CPU shared with other jobs, several threads can stall at every parallel region
waiting for a descheduled thread, which swamps the numbers; `--threads 1` then gives the stable comparison.
"""

import argparse
import copy
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
from reid.models import ConvNet, LuNet

SHAPES = [(120, 2), (128, 128), (512, 128), (2048, 128), (2048, 256)]
MARGIN = 0.2
K = 4  # images per identity in the loss rows: a batch is B / K identities x K

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


def interleaved(steps: dict, repeats: int, calls: dict[str, int]) -> dict[str, list[float]]:
    """Seconds per call of each `steps[name]()`, one sample per round: each round times every candidate
    for a block of `calls[name]` calls, in an order that rotates from round to round."""
    samples = {name: [] for name in steps}
    names = list(steps)
    for rep in range(repeats):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            start = time.perf_counter()
            for _ in range(calls[name]):
                steps[name]()
            samples[name].append((time.perf_counter() - start) / calls[name])
    return samples


def median_ratio(samples: dict[str, list[float]], name: str, peer: str) -> float:
    """Median over the rounds of name's time over peer's time in the same round: a load burst that slows
    one round cancels out of that round's ratio."""
    return statistics.median(a / b for a, b in zip(samples[name], samples[peer], strict=True))


def time_losses(candidates: dict, B: int, D: int, repeats: int) -> dict[str, list[float]]:
    """Samples of the seconds per forward + backward of each `loss_fn(embeddings, labels)`."""
    generator = torch.Generator().manual_seed(B * 1000 + D)
    embeddings = torch.randn(B, D, generator=generator, requires_grad=True)
    labels = torch.arange(B // K).repeat_interleave(K)

    def step(loss_fn):
        embeddings.grad = None
        loss = loss_fn(embeddings, labels)
        (loss[0] if isinstance(loss, tuple) else loss).backward()

    steps = {name: (lambda fn=loss_fn: step(fn)) for name, loss_fn in candidates.items()}
    calls = {}
    for name, run in steps.items():  # warm up, and size each timed block to about 20 ms
        start = time.perf_counter()
        run()
        run()
        calls[name] = max(1, int(0.02 / ((time.perf_counter() - start) / 2)))
    return interleaved(steps, repeats, calls)


def time_training_steps(model, images, labels, candidates: dict, repeats: int) -> dict[str, list[float]]:
    """Samples of the seconds per training step (forward, loss, backward, Adam step) with each loss; each
    candidate trains its own copy of `model` from the same weights."""

    def make_step(loss_fn):
        own = copy.deepcopy(model).train()
        optimizer = torch.optim.Adam(own.parameters(), lr=1e-4)

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(own(images), labels)
            (loss[0] if isinstance(loss, tuple) else loss).backward()
            optimizer.step()

        return step

    steps = {name: make_step(loss_fn) for name, loss_fn in candidates.items()}
    for run in steps.values():  # warm up: first calls allocate and pick kernels
        run()
    return interleaved(steps, repeats, dict.fromkeys(steps, 1))


def print_table(first: str, rows, candidates: list[str], pairs: list[tuple[str, str]], scale: float) -> None:
    """Print a header and, for each (leading cells, samples) in `rows`, the candidates' median times (in
    seconds x `scale`) and the median per-round ratios of `pairs`."""
    print(" ".join([first, *(f"{c:>9}" for c in candidates), *(f"{a}/{b}".rjust(13) for a, b in pairs)]))
    for cells, samples in rows:
        times = [statistics.median(samples[c]) * scale for c in candidates]
        ratios = [median_ratio(samples, a, b) for a, b in pairs]
        print(" ".join([cells, *(f"{t:>9.0f}" for t in times), *(f"{r:>13.3f}" for r in ratios)]), flush=True)


def peak_memory(B: int, D: int, threads: int) -> float:
    """Peak extra resident memory of one forward + backward of ours, in units of B^2 float32 values."""
    args = [sys.executable, "-c", MEMORY_CHILD, str(B), str(D), str(K), str(threads)]
    return float(subprocess.run(args, check=True, capture_output=True, text=True).stdout)


def loss_rows(repeats: int):
    """(leading cells, samples) of each shape in `SHAPES`, measured as they are yielded."""
    candidates = {"ours": BatchHardTripletLoss(MARGIN), "pml": pml_loss(False), "pml-norm": pml_loss(True)}
    for B, D in SHAPES:
        yield f"{B:>5} {D:>4}", time_losses({**candidates, "floor": floor}, B, D, repeats)


def step_rows(step_repeats: int, lunet_repeats: int, lunet_batch: int):
    """(leading cells, samples) of the convnet's and LuNet's training steps, measured as they are yielded."""
    models = [("convnet", lambda: ConvNet(embed_dim=2, in_channels=1, input_size=28), (1, 28, 28), 10, 12)]
    if lunet_repeats > 0:
        models.append(
            ("lunet", lambda: LuNet(embed_dim=128, in_channels=3), (3, 128, 64), lunet_batch // 4, 4)
        )
    candidates = {
        "ours": BatchHardTripletLoss(MARGIN),
        "pml": pml_loss(False),
        "floor": lambda embeddings, labels: embeddings.sum(),
    }
    for name, make_model, shape, P, k in models:
        torch.manual_seed(0)
        model, images = make_model(), torch.randn(P * k, *shape)
        labels = torch.arange(P).repeat_interleave(k)
        repeats = step_repeats if name == "convnet" else lunet_repeats
        yield (
            f"{name:>8} {P * k:>4} {repeats:>6}",
            time_training_steps(model, images, labels, candidates, repeats),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="interleaved rounds of the loss rows")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--step-repeats", type=int, default=7, help="interleaved rounds of convnet steps")
    parser.add_argument("--lunet-repeats", type=int, default=3, help="rounds of LuNet steps; 0 skips them")
    parser.add_argument("--lunet-batch", type=int, default=128, help="LuNet batch size (P x 4)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, {args.threads} threads, P x {K} batches, margin {MARGIN}")
    print(f"microseconds per forward + backward, median over {args.repeats} rounds; ratios: median over the")
    print("rounds of the two candidates' times in the same round")
    print("ours: reid.losses.BatchHardTripletLoss, statistics included")
    print("pml: BatchHardMiner + TripletMarginLoss(reducer=MeanReducer()), unnormalised LpDistance (= ours)")
    print("pml-norm: the same with PML's default LpDistance, which L2-normalises the embeddings")
    print("floor: the (B, B) matmul without a graph + one backward call, the least an eager loss pays\n")
    pairs = [("ours", "pml"), ("ours", "pml-norm"), ("floor", "pml")]
    print_table(
        f"{'B':>5} {'D':>4}", loss_rows(args.repeats), ["ours", "pml", "pml-norm", "floor"], pairs, 1e6
    )

    print("\nmilliseconds per training step: forward + loss + backward + Adam step, median over the rounds;")
    print("pml: PML's loss as above; floor: the same step with embeddings.sum() as the loss\n")
    rows = step_rows(args.step_repeats, args.lunet_repeats, args.lunet_batch)
    pairs = [("ours", "pml"), ("floor", "pml")]
    print_table(f"{'model':>8} {'B':>4} {'rounds':>6}", rows, ["ours", "pml", "floor"], pairs, 1e3)

    B, D = 8192, 128
    print(f"\npeak extra memory of ours at B={B}, D={D}: {peak_memory(B, D, args.threads):.2f} x B^2 float32")
    print("(a fresh process allocates the inputs and warms up, resets its peak resident set size through")
    print(" /proc/self/clear_refs, runs one forward + backward and reports VmHWM - VmRSS before; each (B, B)")
    print(" buffer is 256 MiB, which glibc maps on allocation and unmaps on release, so the resident size")
    print(" follows the live tensors)")


if __name__ == "__main__":
    main()
