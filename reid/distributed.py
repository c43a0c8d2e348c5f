"""Cross-rank helpers for DDP: a no-op in a single process.

`gather_batch` concatenates every rank's batch so that a loss can mine the hardest positives and negatives
over the global batch. The embeddings are gathered with autograd (`torch.distributed.nn.all_gather`,
whose backward sums the gradients of each slice over the ranks): when every rank computes the same loss
on the global batch, DDP's gradient averaging then gives exactly the gradient of that loss in one process.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import Tensor


def world_size() -> int:
    """Number of processes in the default group (1 without torch.distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_batch(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Every rank's (B, D) embeddings (with gradients) and (B,) labels, concatenated in rank order."""
    if world_size() == 1:
        return embeddings, labels
    gathered_labels = [torch.empty_like(labels) for _ in range(world_size())]
    dist.all_gather(gathered_labels, labels)
    return torch.cat(dist_nn.all_gather(embeddings)), torch.cat(gathered_labels)
