"""Cross-rank helpers for DDP: a no-op in a single process.

`gather_batch` concatenates every rank's batch so that a loss can mine the hardest positives and negatives
over the global batch. The embeddings keep their gradients: the backward pass sums each slice's gradient
over the ranks and hands it to the rank that produced the slice. When every rank computes the same loss on
the global batch, DDP's gradient averaging then gives exactly the gradient of that loss in one process.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    """Number of processes in the default group (1 without torch.distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _AllGather(torch.autograd.Function):
    """(B, ...) per rank -> (world_size * B, ...) in rank order; backward: summed over ranks, own slice."""

    @staticmethod
    def forward(ctx, local: Tensor) -> Tensor:
        parts = [torch.empty_like(local) for _ in range(world_size())]
        dist.all_gather(parts, local.contiguous())
        ctx.rows = len(local)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather_batch(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Every rank's (B, D) embeddings (with gradients) and (B,) labels, concatenated in rank order.

    Every rank must pass the same B (PK batches are all P x K).
    """
    if world_size() == 1:
        return embeddings, labels
    gathered_labels = [torch.empty_like(labels) for _ in range(world_size())]
    dist.all_gather(gathered_labels, labels.contiguous())
    return _AllGather.apply(embeddings), torch.cat(gathered_labels)
