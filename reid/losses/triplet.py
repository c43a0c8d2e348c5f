"""Triplet losses on a batch of embeddings (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss").

Each loss is its definition written in plain autograd. All distances are Euclidean (not squared). A
triplet (a, p, n) is valid when p != a has the label of a and n has another label. Anchors without a
positive or without a negative in the batch are left out of every mean; when nothing is valid a loss is a
zero that still backpropagates (same value and gradient as `(embeddings * 0).sum()`).

The batch-hard losses hold at most two (B, B) float matrices and a (B, B) bool mask at once, none of them
kept for backward; batch all builds (B, B, B) tensors.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from reid.retrieval.distances import euclidean_distances, row_ordered_distances


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


def _hardest_distances(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Batch-hard mining of (B, D) embeddings with (B,) labels: the (B,) distances d_ap from each anchor to
    its hardest (farthest) positive and d_an to its hardest (nearest) negative, and (B,) weights, 1 / n on
    the n valid anchors (those with both) and 0 elsewhere, so that `values @ weights` is the mean over the
    valid anchors, and zero with a zero gradient when there are none.

    The two indices per anchor are picked without a graph, then only the 2B picked distances are recomputed
    with autograd: the gradient of the max and min over a distance matrix built with autograd, but backward
    keeps O(B D) values instead of several (B, B) tensors.
    """
    with torch.no_grad():
        rank = row_ordered_distances(embeddings, embeddings)  # (B, B): d(a, j)^2 less a constant per row a
        same = labels.unsqueeze(1) == labels  # integers, compared exactly however large
        nearest_neg, hardest_neg = torch.where(same, torch.inf, rank).min(1)
        rank.masked_fill_(~same, -torch.inf).fill_diagonal_(-torch.inf)  # positives: same label, not itself
        farthest_pos, hardest_pos = rank.max(1)
        valid = (farthest_pos > -torch.inf) & (nearest_neg < torch.inf)  # has a positive and a negative
        weights = valid.to(embeddings.dtype) / valid.sum().clamp_min(1)
    d_ap = torch.linalg.vector_norm(embeddings - embeddings.index_select(0, hardest_pos), dim=1)
    d_an = torch.linalg.vector_norm(embeddings - embeddings.index_select(0, hardest_neg), dim=1)
    return d_ap, d_an, weights  # the norm's gradient is zero at zero: coincident points give no NaN


def _stats(active: Tensor, d_ap: Tensor, d_an: Tensor, weights: Tensor) -> TripletStats:
    """`TripletStats`: (B,) bool active flags and batch-hard distances, averaged over the valid anchors."""
    with torch.no_grad():
        return TripletStats(*(torch.stack([active.to(d_ap.dtype), d_ap, d_an]) @ weights))


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
    d_ap, d_an, weights = _hardest_distances(embeddings, labels)
    terms = F.relu(d_ap - d_an + margin)
    loss = terms @ weights  # the mean over the valid anchors
    return (loss, _stats(terms > 0, d_ap, d_an, weights)) if return_stats else loss


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
    d_ap, d_an, weights = _hardest_distances(embeddings, labels)
    loss = F.softplus(d_ap - d_an) @ weights
    return (loss, _stats(d_ap > d_an, d_ap, d_an, weights)) if return_stats else loss


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
    dist = euclidean_distances(embeddings)  # (B, B)
    same = labels.unsqueeze(1) == labels
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    valid = positive.unsqueeze(2) & ~same.unsqueeze(1)  # (B, B, B): [a, p, n]
    terms = torch.where(valid, F.relu(dist.unsqueeze(2) - dist.unsqueeze(1) + margin), 0)
    num_active = (terms > 0).sum()
    loss = terms.sum() / num_active.clamp_min(1)
    if not return_stats:
        return loss
    with torch.no_grad():
        d_ap, d_an, weights = _hardest_distances(embeddings, labels)
        hardest_pos, hardest_neg = torch.stack([d_ap, d_an]) @ weights
        active_fraction = num_active.to(embeddings.dtype) / valid.sum().clamp_min(1)
    return loss, TripletStats(active_fraction, hardest_pos, hardest_neg)
