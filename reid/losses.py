"""Triplet losses on a batch of embeddings (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss").

All distances are Euclidean (not squared). A triplet (a, p, n) is valid when p != a has the label of a and
n has another label. Anchors without a positive or without a negative in the batch are left out of every
mean; when nothing is valid a loss is a zero that still backpropagates (same value and gradient as
`(embeddings * 0).sum()`).

Batch-hard mining needs no autograd graph: the hardest positive and negative of each anchor are picked
from one (B, B) score matrix (one matmul), then only the picked distances are recomputed from the gathered
rows, in one autograd node whose backward costs O(B * D). Peak extra memory is at most 2.3 B^2 float32
values (1.1 B^2 above `MASK_MINING_MAX_BATCH`). The picking ranks squared distances computed with one
matmul, so candidates tied within float rounding may resolve either way.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from reid.distributed import gather_batch


def pairwise_distance(x: Tensor, squared: bool = False) -> Tensor:
    """Euclidean distances between all rows of `x`.

    Uses ||a||^2 + ||b||^2 - 2 a.b (one matmul); the diagonal is exactly zero and the square root has a zero
    gradient where a distance is zero, so coincident rows give finite gradients.

    Args:
        x: (B, D) points.
        squared: return squared distances.

    Returns:
        (B, B) distances.
    """
    norms = x.square().sum(1)
    sq = torch.addmm(norms.unsqueeze(1) + norms, x, x.T, alpha=-2).clamp_min(0).fill_diagonal_(0)
    if squared:
        return sq
    zero = sq == 0
    return sq.masked_fill(zero, 1).sqrt().masked_fill(zero, 0)


@dataclass(frozen=True)
class TripletStats:
    """Detached 0-dim summaries of a triplet loss over the batch's valid anchors.

    Attributes:
        active_fraction: fraction of the terms that still produce a gradient (see each loss).
        hardest_pos: mean over valid anchors of the distance to the hardest (farthest) positive.
        hardest_neg: mean over valid anchors of the distance to the hardest (nearest) negative.
    """

    active_fraction: Tensor
    hardest_pos: Tensor
    hardest_neg: Tensor


MASK_MINING_MAX_BATCH = 256
"""Batches up to this size are mined with a (B, B) label mask, larger ones through label groups: on a CPU
core the mask is faster below about 256 (fewer, vectorized operations, and no host sync, which also suits a
GPU), the groups above (fewer passes over the matrix, less memory)."""


def _mine_with_label_mask(score: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Row-wise max of `score` (B, B) over each anchor's positives and min over its negatives, with their
    (B,) column indices; -inf / +inf where there are none. Overwrites `score`. Peak 2.3 B^2 values."""
    same = labels.unsqueeze(1) == labels
    pos_max, pos_idx = torch.where(same, score, -torch.inf).fill_diagonal_(-torch.inf).max(1)
    neg_min, neg_idx = score.masked_fill_(same, torch.inf).min(1)
    return pos_max, pos_idx, neg_min, neg_idx


def _label_members(labels: Tensor) -> Tensor:
    """(B, M) indices of the samples sharing each sample's label (M = largest label count), in index order,
    padded with the sample's own index. Lets mining touch O(B M) entries for positives instead of O(B^2)."""
    order = torch.argsort(labels, stable=True)
    _, group, counts = torch.unique_consecutive(labels[order], return_inverse=True, return_counts=True)
    group_of = torch.empty_like(group).scatter_(0, order, group)  # (B,) label group of each sample
    starts = (torch.cumsum(counts, 0) - counts)[group_of]
    k = torch.arange(int(counts.max()), device=labels.device)
    slot = (starts.unsqueeze(1) + k).clamp_max(len(labels) - 1)
    inside = k < counts[group_of].unsqueeze(1)
    return torch.where(inside, order[slot], torch.arange(len(labels), device=labels.device).unsqueeze(1))


def _mine_with_label_groups(score: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """As `_mine_with_label_mask`, reading positives from each anchor's label group, (B, M) entries, and
    overwriting the same entries in place for the negatives: two full passes over `score` (the matmul and
    the row minimum), peak 1.1 B^2 values; finding M costs one host sync."""
    members = _label_members(labels)  # (B, M): each anchor's label group, padded with the anchor
    own = members == torch.arange(len(labels), device=labels.device).unsqueeze(1)
    pos_max, pos_k = score.gather(1, members).masked_fill_(own, -torch.inf).max(1)
    pos_idx = members.gather(1, pos_k.unsqueeze(1)).squeeze(1)
    neg_min, neg_idx = score.scatter_(1, members, torch.inf).min(1)
    return pos_max, pos_idx, neg_min, neg_idx


class _HardestDistances(torch.autograd.Function):
    """Distances from each anchor to its hardest positive and hardest negative, with a hand-written backward.

    Mining needs no graph. One autograd node for both picked distances keeps the per-operation overhead,
    which dominates at the usual batch sizes, low; its backward is O(B * D).
    """

    @staticmethod
    def forward(ctx, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(B, D) embeddings, (B,) labels -> (2, B) distances [to hardest positive, to hardest negative] and
        (B,) flags of the anchors that have both (the distances of the others are arbitrary but finite)."""
        x = embeddings
        # score[a, j] = ||x_j||^2 - 2 x_a.x_j = d(a, j)^2 - ||x_a||^2 orders row a like the distances.
        score = torch.addmm(x.square().sum(1), x, x.T, alpha=-2)
        mine = _mine_with_label_mask if len(labels) <= MASK_MINING_MAX_BATCH else _mine_with_label_groups
        pos_max, pos_idx, neg_min, neg_idx = mine(score, labels)
        valid = pos_max - neg_min > -torch.inf  # -inf exactly when the positive or the negative is missing
        picked = torch.cat([pos_idx, neg_idx])
        diff = x - x.index_select(0, picked).view(2, *x.shape)  # (2, B, D): anchor minus picked
        distances = torch.linalg.vector_norm(diff, dim=2)
        ctx.save_for_backward(diff, distances, picked)
        ctx.mark_non_differentiable(valid)
        return distances, valid

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_distances: Tensor, _) -> tuple[Tensor, None]:
        """d||a - p|| / da = (a - p) / ||a - p|| = -d||a - p|| / dp; zero where a distance is zero."""
        diff, distances, picked = ctx.saved_tensors
        scaled = diff * (grad_distances / distances.clamp_min(1e-12)).unsqueeze(2)
        return scaled.sum(0).index_add_(0, picked, scaled.flatten(0, 1), alpha=-1), None


def _batch_hard_distances(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Distances from each anchor to its hardest positive and hardest negative.

    Args:
        embeddings: (B, D) float.
        labels: (B,) int.

    Returns:
        d_ap, d_an: (B,) distances with gradients (arbitrary but finite for invalid anchors).
        weights: (B,) detached, 1 / (number of valid anchors) for valid anchors and 0 elsewhere, so that
            `weights @ terms` is the mean over valid anchors (zero if there are none).
    """
    distances, valid = _HardestDistances.apply(embeddings, labels)
    weights = valid.to(embeddings.dtype) / valid.sum().clamp_min(1)
    return distances[0], distances[1], weights


def _stats(active: Tensor, d_ap: Tensor, d_an: Tensor, weights: Tensor) -> TripletStats:
    """Weighted means of (B,) per-anchor `active` flags and distances, detached."""
    with torch.no_grad():
        return TripletStats(weights @ active.to(weights.dtype), weights @ d_ap, weights @ d_an)


def batch_hard_triplet_loss(
    embeddings: Tensor, labels: Tensor, margin: float, return_stats: bool = False
) -> Tensor | tuple[Tensor, TripletStats]:
    """Batch-hard triplet loss: mean over valid anchors of relu(d(a, hardest p) - d(a, hardest n) + margin).

    Args:
        embeddings: (B, D) float.
        labels: (B,) int.
        margin: hinge margin.
        return_stats: also return `TripletStats`; `active_fraction` is the fraction of valid anchors with a
            non-zero loss.

    Returns:
        0-dim loss, or (loss, stats).
    """
    d_ap, d_an, weights = _batch_hard_distances(embeddings, labels)
    terms = F.relu(d_ap - d_an + margin)
    loss = weights @ terms
    if not return_stats:
        return loss
    return loss, _stats(terms > 0, d_ap, d_an, weights)


def batch_hard_soft_margin_loss(
    embeddings: Tensor, labels: Tensor, return_stats: bool = False
) -> Tensor | tuple[Tensor, TripletStats]:
    """Batch-hard soft-margin loss: mean over valid anchors of softplus(d(a, hardest p) - d(a, hardest n)).

    Args:
        embeddings: (B, D) float.
        labels: (B,) int.
        return_stats: also return `TripletStats`; softplus is never zero, so `active_fraction` is the
            fraction of valid anchors whose hardest triplet is still violated (d_ap > d_an), i.e. whose
            hardest negative is nearer than their hardest positive.

    Returns:
        0-dim loss, or (loss, stats).
    """
    d_ap, d_an, weights = _batch_hard_distances(embeddings, labels)
    diff = d_ap - d_an
    loss = weights @ F.softplus(diff)
    if not return_stats:
        return loss
    return loss, _stats(diff > 0, d_ap, d_an, weights)


def batch_all_triplet_loss(
    embeddings: Tensor, labels: Tensor, margin: float, return_stats: bool = False
) -> Tensor | tuple[Tensor, TripletStats]:
    """Batch-all triplet loss (the paper's BA≠0): relu(d_ap - d_an + margin) averaged over non-zero terms.

    Every valid triplet (a, p, n) contributes; the mean is over the terms that are non-zero (zero if none).
    Builds (B, B, B) tensors, so it suits the usual P x K batches of a few hundred embeddings.

    Args:
        embeddings: (B, D) float.
        labels: (B,) int.
        margin: hinge margin.
        return_stats: also return `TripletStats`; `active_fraction` is the fraction of valid triplets with a
            non-zero loss, the distances are the batch-hard ones, as for the other losses.

    Returns:
        0-dim loss, or (loss, stats).
    """
    dist = pairwise_distance(embeddings)
    same = labels.unsqueeze(1) == labels
    pos = same.clone().fill_diagonal_(False)
    valid = pos.unsqueeze(2) & ~same.unsqueeze(1)  # (B, B, B): [a, p, n]
    terms = F.relu(dist.unsqueeze(2) - dist.unsqueeze(1) + margin) * valid
    num_active = (terms > 0).sum()
    loss = terms.sum() / num_active.clamp_min(1)
    if not return_stats:
        return loss
    with torch.no_grad():
        d_ap, d_an, weights = _batch_hard_distances(embeddings, labels)
        active_fraction = (num_active / valid.sum().clamp_min(1)).to(embeddings.dtype)
    return loss, TripletStats(active_fraction, weights @ d_ap, weights @ d_an)


class _TripletLossModule(nn.Module):
    """A loss function as a module: `forward(embeddings (B, D), labels (B,))` returns (loss, stats).

    With `gather` (DDP), the loss is computed on every rank over all ranks' batches concatenated, so the
    hardest examples are mined over the global batch; see `reid.distributed.gather_batch`.
    """

    def __init__(self, gather: bool = False):
        super().__init__()
        self.gather = gather

    def forward(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, TripletStats]:
        if self.gather:
            embeddings, labels = gather_batch(embeddings, labels)
        return self.loss(embeddings, labels)

    def loss(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, TripletStats]:
        raise NotImplementedError


class BatchHardTripletLoss(_TripletLossModule):
    """Module form of `batch_hard_triplet_loss`."""

    def __init__(self, margin: float, gather: bool = False):
        super().__init__(gather)
        self.margin = margin

    def loss(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, TripletStats]:
        return batch_hard_triplet_loss(embeddings, labels, self.margin, return_stats=True)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, gather={self.gather}"


class SoftMarginTripletLoss(_TripletLossModule):
    """Module form of `batch_hard_soft_margin_loss`."""

    def loss(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, TripletStats]:
        return batch_hard_soft_margin_loss(embeddings, labels, return_stats=True)


class BatchAllTripletLoss(_TripletLossModule):
    """Module form of `batch_all_triplet_loss`."""

    def __init__(self, margin: float, gather: bool = False):
        super().__init__(gather)
        self.margin = margin

    def loss(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, TripletStats]:
        return batch_all_triplet_loss(embeddings, labels, self.margin, return_stats=True)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, gather={self.gather}"
