"""Euclidean distances between embeddings: the one implementation that losses, metrics and search share."""

import torch
from torch import Tensor


def euclidean_distances(x: Tensor, y: Tensor | None = None, squared: bool = False) -> Tensor:
    """Euclidean distances (X, Y) between the rows of x (X, D) and y (Y, D); y=None means x against itself.

    Expands |x - y|^2 = |x|^2 + |y|^2 - 2 x.y so the work is one matrix product; rounding can make a
    square slightly negative, hence the clamp. Against itself the diagonal is exactly zero. When the
    result needs a gradient, the square root gets a zero gradient where a distance is zero (sqrt's own
    is infinite there), so coincident points train without NaNs; otherwise it works in place.

    Args:
        x: (X, D) points.
        y: (Y, D) points, or None for x itself.
        squared: return squared distances.

    Returns:
        (X, Y) distances.
    """
    other = x if y is None else y
    sq = torch.addmm(other.square().sum(1), x, other.T, alpha=-2).add_(x.square().sum(1, keepdim=True))
    sq = sq.clamp_min_(0)
    if y is None:
        sq.fill_diagonal_(0)
    if squared:
        return sq
    if not sq.requires_grad:
        return sq.sqrt_()
    zero = sq == 0
    return sq.masked_fill(zero, 1).sqrt().masked_fill(zero, 0)


def row_ordered_distances(x: Tensor, y: Tensor) -> Tensor:
    """|y|^2 - 2 x.y (X, Y): the squared distance less |x|^2, a constant along each row.

    Each row is ordered as by Euclidean distance, for one matrix product and no other pass: enough for
    rankings and nearest neighbours.
    """
    return torch.addmm((y * y).sum(1), x, y.T, alpha=-2)
