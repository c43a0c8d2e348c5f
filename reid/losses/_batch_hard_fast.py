"""Private fast path of the batch-hard losses: one hand-written autograd node over a mined (2, B, B) table.

Same values, gradients and statistics as `reid.losses.triplet`'s reference (tests/test_losses.py checks
it); kept apart so that the reference is what a reader meets first. Mining needs no autograd graph: the
hardest positive and negative of each anchor are picked from one (B, B) squared-distance matrix (one
matmul), then only the picked distances are recomputed from the gathered rows. The node's forward also
computes the O(B * D) gradient. Peak extra memory is about 5 B^2 float32 values up to
`MASK_MINING_MAX_BATCH` and 1.1 B^2 above it. Excluded entries are marked with the dtype's largest value,
so squared norms must stay far below it (true of any usable float32 embedding).
"""

import functools

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from reid.losses.triplet import TripletStats

MASK_MINING_MAX_BATCH = 256
"""Batches up to this size are mined with a (B, B) label mask, larger ones through label groups: on a CPU
core the mask is faster below about 256 (fewer, vectorized operations, and no host sync, which also suits a
GPU), the groups above (fewer passes over the matrix, less memory)."""


@functools.cache
def _constants(device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(2, 1, 1) signs, offsets and scales that turn a squared-distance key and a same-label mask into the
    two halves of `_mine_with_label_mask`'s table, and the (2, 1) signs [1, -1] of d_ap and d_an in the
    gradient. Made once per device and dtype: building a small tensor costs as much as an operation."""
    big = torch.finfo(dtype).max
    table = torch.tensor([[1.0, -big, big], [-1.0, 0.0, -big]], device=device, dtype=dtype)
    signs, offsets, scales = table.view(2, 3, 1, 1).unbind(1)
    return signs, offsets, scales, signs.view(2, 1)


def _mine_with_label_mask(x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """(2, B) indices of each anchor's hardest positive (row 0) and hardest negative (row 1), and (B,) 1.0
    where the anchor has both, else 0.0.

    One max over a (2, B, B) table finds both: entry (a, j) of half 0 is key = d(a, j)^2 - ||x_j||^2 where
    a is a positive of anchor j, half 1 is -key where a is a negative, and every other entry is about -BIG
    (the dtype's largest value). The label comparison is written as floats and added as BIG * mask: on a
    CPU, bool selects over the matrix cost several times a float multiply-add. Peak about 5 B^2 values
    (1.3 MB at the largest batch this path takes)."""
    big = torch.finfo(x.dtype).max
    signs, offsets, scales, _ = _constants(x.device, x.dtype)
    gram = torch.mm(x, x.t())
    key = torch.sub(gram.diagonal().unsqueeze(1), gram, alpha=2)  # ||x_a||^2 - 2 x_a.x_j, column j ranks a
    same = torch.eq(labels.unsqueeze(1), labels, out=x.new_empty(len(labels), len(labels)))
    # BIG * same + offsets is 0 or -BIG exactly; building the (2, B, B) table from `same` rather than from
    # the (2, 1, 1) constants keeps every operation on the fast, contiguous path
    table = same.mul(scales).add_(offsets).addcmul_(signs, key)
    table[0].fill_diagonal_(-big)  # an anchor is not its own positive
    best, picked = table.max(1)
    return picked, best.amin(0).gt_(-0.5 * big)  # about -BIG where an anchor has no candidate; 1.0 or 0.0


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


def _mine_with_label_groups(x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """As `_mine_with_label_mask`, ranking row a of score = d(a, j)^2 - ||x_a||^2 (one matmul): positives
    are read from each anchor's label group, (B, M) entries, and the same entries are overwritten in place
    for the negatives, so the matrix is touched in two full passes (the matmul and the row minimum); peak
    1.1 B^2 values; finding M costs one host sync."""
    score = torch.addmm(x.square().sum(1), x, x.T, alpha=-2)
    members = _label_members(labels)  # (B, M): each anchor's label group, padded with the anchor
    own = members == torch.arange(len(labels), device=labels.device).unsqueeze(1)
    pos_max, pos_k = score.gather(1, members).masked_fill_(own, -torch.inf).max(1)
    pos_idx = members.gather(1, pos_k.unsqueeze(1)).squeeze(1)
    neg_min, neg_idx = score.scatter_(1, members, torch.inf).min(1)
    valid = (pos_max - neg_min).gt_(-torch.inf)  # -inf exactly when p or n is missing; 1.0 or 0.0
    return torch.stack([pos_idx, neg_idx]), valid


def _hinge(margin: float):
    """The hard-margin term relu(gap + margin) for `_BatchHardMean`, active (with a gradient) where it is
    positive."""

    def term(gap: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # overwrites `gap`, a temporary
        values = gap.add_(margin).clamp_min_(0)
        slopes = values.sign()  # 1 where the hinge is open, else 0
        return values, slopes, slopes

    return term


def _soft_margin(gap: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The soft-margin term softplus(gap) for `_BatchHardMean`; softplus is never zero, so an anchor counts
    as active while its hardest triplet is still violated (gap > 0)."""
    return F.softplus(gap), torch.sigmoid(gap), (gap > 0).to(gap.dtype)


def _saved_gradient_times(ctx, grad_loss: Tensor, _) -> tuple[Tensor, None, None]:
    """`_BatchHardMean`'s backward: the gradient its forward computed for an upstream gradient of 1."""
    (grad,) = ctx.saved_tensors
    return grad * grad_loss, None, None


_once_differentiable_backward = once_differentiable(_saved_gradient_times)


class _BatchHardMean(torch.autograd.Function):
    """Mean over the valid anchors of term(d(a, hardest p) - d(a, hardest n)), with its statistics, as one
    autograd node whose forward also computes the O(B * D) gradient.

    Mining needs no graph, and at the usual batch sizes PyTorch's per-operation overhead outweighs the
    arithmetic: a single node, few operations and a one-multiplication backward keep the step short.
    """

    @staticmethod
    def forward(ctx, embeddings: Tensor, labels: Tensor, term) -> tuple[Tensor, Tensor]:
        """(B, D) embeddings, (B,) labels and `term`, which maps the (B,) gaps d_ap - d_an to (B,) values,
        slopes (d value / d gap) and active flags -> the 0-dim loss and the (3,) detached statistics [active
        fraction, mean hardest-positive distance, mean hardest-negative distance] over the valid anchors."""
        x = embeddings
        mine = _mine_with_label_mask if len(labels) <= MASK_MINING_MAX_BATCH else _mine_with_label_groups
        picked, valid = mine(x, labels)  # (2, B): hardest positive, hardest negative; (B,) 0 or 1
        weights = valid.div_(valid.sum().clamp_min_(1))  # the mean over valid anchors is `weights @ values`
        picked = picked.view(-1)
        towards = x.index_select(0, picked).view(2, *x.shape).sub_(x)  # (2, B, D): from each anchor to p, n
        distances = torch.linalg.vector_norm(towards, dim=2)  # (2, B): d_ap, d_an
        d_ap, d_an = distances.unbind()
        values, slopes, active = term(d_ap - d_an)
        stats = torch.stack([active, d_ap, d_an]) @ weights
        # d loss / d distance over the distance (zero where it is zero; negative for d_an, as the loss falls
        # when it grows): the gradient of ||t|| is -t / ||t|| for the anchor and t / ||t|| for the picked row.
        _, _, _, signs = _constants(x.device, x.dtype)
        towards.mul_(torch.div(slopes * weights, distances.clamp_min(1e-12).mul_(signs)).unsqueeze(2))
        grad = towards.sum(0).neg_().index_add_(0, picked, towards.view(-1, x.shape[1]))
        ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(stats)
        ctx.set_materialize_grads(False)  # the statistics get no gradient: no zeros to make for them
        return weights @ values, stats

    @staticmethod
    def backward(ctx, grad_loss: Tensor, grad_stats: None) -> tuple[Tensor, None, None]:
        # `once_differentiable` makes a double backward an error (the saved gradient has no graph), at the
        # cost of a no_grad block per call; it is only needed when this backward is recorded.
        if torch.is_grad_enabled():
            return _once_differentiable_backward(ctx, grad_loss, grad_stats)
        return _saved_gradient_times(ctx, grad_loss, grad_stats)


def _batch_hard_mean(embeddings: Tensor, labels: Tensor, term, return_stats: bool):
    """`_BatchHardMean` as a loss function: the 0-dim loss, or (loss, `TripletStats`)."""
    loss, stats = _BatchHardMean.apply(embeddings, labels, term)
    return (loss, TripletStats(*stats.unbind())) if return_stats else loss


def batch_hard_triplet_loss(
    embeddings: Tensor, labels: Tensor, margin: float, return_stats: bool = False
) -> Tensor | tuple[Tensor, TripletStats]:
    """As `reid.losses.batch_hard_triplet_loss`."""
    return _batch_hard_mean(embeddings, labels, _hinge(margin), return_stats)


def batch_hard_soft_margin_loss(
    embeddings: Tensor, labels: Tensor, return_stats: bool = False
) -> Tensor | tuple[Tensor, TripletStats]:
    """As `reid.losses.batch_hard_soft_margin_loss`."""
    return _batch_hard_mean(embeddings, labels, _soft_margin, return_stats)
