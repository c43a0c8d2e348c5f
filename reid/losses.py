"""Triplet losses on a batch of embeddings (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss").

All distances are Euclidean (not squared). A triplet (a, p, n) is valid when p != a has the label of a and
n has another label. Anchors without a positive or without a negative in the batch are left out of every
mean; when nothing is valid a loss is a zero that still backpropagates (same value and gradient as
`(embeddings * 0).sum()`).

Batch-hard mining needs no autograd graph: the hardest positive and negative of each anchor are picked
from one (B, B) score matrix (one matmul), then only the picked distances are recomputed from the gathered
rows. The batch-hard losses are one autograd node each, whose backward costs O(B * D). Peak extra memory is
at most 2.3 B^2 float32 values (1.1 B^2 above `MASK_MINING_MAX_BATCH`). The picking ranks squared
distances computed with one matmul, so candidates tied within float rounding may resolve either way.
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


def _hinge(margin: float):
    """The hard-margin term relu(gap + margin) for `_BatchHardMean`, active (with a gradient) where it is
    positive."""

    def term(gap: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        values = (gap + margin).clamp_min_(0)
        slopes = values.sign()  # 1 where the hinge is open, else 0
        return values, slopes, slopes

    return term


def _soft_margin(gap: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The soft-margin term softplus(gap) for `_BatchHardMean`; softplus is never zero, so an anchor counts
    as active while its hardest triplet is still violated (gap > 0)."""
    return F.softplus(gap), torch.sigmoid(gap), (gap > 0).to(gap.dtype)


class _BatchHardMean(torch.autograd.Function):
    """Mean over the valid anchors of term(d(a, hardest p) - d(a, hardest n)), with its statistics, as one
    autograd node with a hand-written O(B * D) backward.

    Mining needs no graph, and at the usual batch sizes PyTorch's per-operation overhead outweighs the
    arithmetic: a single node keeps both the forward and the backward short.
    """

    @staticmethod
    def forward(ctx, embeddings: Tensor, labels: Tensor, term) -> tuple[Tensor, Tensor]:
        """(B, D) embeddings, (B,) labels and `term`, which maps the (B,) gaps d_ap - d_an to (B,) values,
        slopes (d value / d gap) and active flags -> the 0-dim loss and the (3,) detached statistics [active
        fraction, mean hardest-positive distance, mean hardest-negative distance] over the valid anchors."""
        x = embeddings
        # score[a, j] = ||x_j||^2 - 2 x_a.x_j = d(a, j)^2 - ||x_a||^2 orders row a like the distances.
        score = torch.addmm(x.square().sum(1), x, x.T, alpha=-2)
        mine = _mine_with_label_mask if len(labels) <= MASK_MINING_MAX_BATCH else _mine_with_label_groups
        pos_max, pos_idx, neg_min, neg_idx = mine(score, labels)
        valid = (pos_max - neg_min > -torch.inf).to(x.dtype)  # -inf exactly when p or n is missing
        weights = valid / valid.sum().clamp_min(1)  # the mean over valid anchors is `weights @ values`
        picked = torch.cat([pos_idx, neg_idx])
        towards = x.index_select(0, picked).view(2, *x.shape) - x  # (2, B, D): from each anchor to p, to n
        distances = torch.linalg.vector_norm(towards, dim=2)  # (2, B): d_ap, d_an
        d_ap, d_an = distances
        values, slopes, active = term(d_ap - d_an)
        stats = torch.stack([active, d_ap, d_an]) @ weights
        # d loss / d distance, divided by the distance (zero where the distance is zero): the gradient of
        # ||t|| is -t / ||t|| for the anchor and t / ||t|| for the picked sample.
        rates = (slopes * weights) / distances.clamp_min(1e-12)
        rates[1].neg_()  # the loss falls as d_an grows
        ctx.save_for_backward(towards, rates, picked)
        ctx.mark_non_differentiable(stats)
        return weights @ values, stats

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss: Tensor, _) -> tuple[Tensor, None, None]:
        towards, rates, picked = ctx.saved_tensors
        scaled = towards * (rates * grad_loss).unsqueeze(2)
        return scaled.sum(0).neg_().index_add_(0, picked, scaled.flatten(0, 1)), None, None


def _batch_hard_mean(embeddings: Tensor, labels: Tensor, term, return_stats: bool):
    """`_BatchHardMean` as a loss function: the 0-dim loss, or (loss, `TripletStats`)."""
    loss, stats = _BatchHardMean.apply(embeddings, labels, term)
    return (loss, TripletStats(*stats)) if return_stats else loss


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
    return _batch_hard_mean(embeddings, labels, _hinge(margin), return_stats)


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
    return _batch_hard_mean(embeddings, labels, _soft_margin, return_stats)


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
        _, hardest = batch_hard_triplet_loss(embeddings, labels, margin, return_stats=True)
        active_fraction = (num_active / valid.sum().clamp_min(1)).to(embeddings.dtype)
    return loss, TripletStats(active_fraction, hardest.hardest_pos, hardest.hardest_neg)


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
