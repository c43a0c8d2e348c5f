"""Benchmark the backbones on the CPU: parameters, and images per second embedding and training.

Rows: the small ConvNet and LuNet of `reid.models`, and the ImageNet networks with TriNet's head
(`reid.models.trinet.EmbeddingNet`): ResNet-18 and ResNet-50 at LuNet's 128 x 64, and ResNet-50 at the
paper's TriNet input, 256 x 128; all with 128-D embeddings and random weights, on batches of 32 RGB images.
`eval` is a forward pass in eval mode under `torch.inference_mode` (embedding a gallery); `train` is a
forward and backward pass in train mode (a training step without the loss and the optimizer, which cost
the same for every backbone).

The rows run interleaved, as in scripts/bench_loss.py: each round times every row once, in an order that
rotates from round to round. A rate is the median over the rounds; `x lunet` is the median over the rounds
of the row's time over LuNet's time in the same round (2.0: half LuNet's images per second), which a burst
of load from other jobs leaves standing.

    python scripts/bench_backbones.py [--repeats 3] [--batch 32] [--threads 2]
"""

import argparse
import statistics
from collections.abc import Callable

import torch
from bench_loss import interleaved, median_ratio
from torch import nn

from reid.models import ConvNet, EmbeddingNet, LuNet

EMBED_DIM = 128
SMALL, TRINET = (128, 64), (256, 128)  # LuNet's input and the paper's TriNet input
ROWS: dict[str, tuple[Callable[[], nn.Module], tuple[int, int]]] = {
    "convnet": (lambda: ConvNet(EMBED_DIM, in_channels=3, input_size=SMALL), SMALL),
    "lunet": (lambda: LuNet(EMBED_DIM), SMALL),
    "resnet18": (lambda: EmbeddingNet("resnet18", EMBED_DIM), SMALL),
    "resnet50": (lambda: EmbeddingNet("resnet50", EMBED_DIM), SMALL),
    "resnet50@256": (lambda: EmbeddingNet("resnet50", EMBED_DIM), TRINET),
}


def eval_step(model: nn.Module, images: torch.Tensor) -> Callable[[], None]:
    """One forward pass in eval mode, without autograd."""
    model = model.eval()

    def step() -> None:
        with torch.inference_mode():
            model(images)

    return step


def train_step(model: nn.Module, images: torch.Tensor) -> Callable[[], None]:
    """One forward and backward pass in train mode (batch norm on batch statistics)."""
    model = model.train()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(images).square().mean().backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (after one warm-up round)")
    parser.add_argument("--batch", type=int, default=32, help="images per batch")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.batch} images a batch, D={EMBED_DIM}")
    models = {name: build() for name, (build, _) in ROWS.items()}
    images = {name: torch.rand(args.batch, 3, *size) for name, (_, size) in ROWS.items()}
    rates = {}
    for mode, make in (("eval", eval_step), ("train", train_step)):
        steps = {name: make(models[name], images[name]) for name in ROWS}
        for step in steps.values():  # warm up: first calls allocate and pick kernels
            step()
        samples = interleaved(steps, args.repeats, dict.fromkeys(steps, 1))
        rates[mode] = {
            name: (args.batch / statistics.median(times), median_ratio(samples, name, "lunet"))
            for name, times in samples.items()
        }
    print(
        f"{'model':>13} {'input':>9} {'parameters':>12} {'eval img/s':>11} {'x lunet':>8} "
        f"{'train img/s':>12} {'x lunet':>8}"
    )
    for name, (_, (height, width)) in ROWS.items():
        parameters = sum(p.numel() for p in models[name].parameters())
        (eval_rate, eval_ratio), (train_rate, train_ratio) = rates["eval"][name], rates["train"][name]
        print(
            f"{name:>13} {f'{height}x{width}':>9} {parameters:>12,} {eval_rate:>11.1f} {eval_ratio:>8.2f} "
            f"{train_rate:>12.1f} {train_ratio:>8.2f}"
        )


if __name__ == "__main__":
    main()
