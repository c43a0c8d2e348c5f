"""The triplet losses as modules, as the training configs instantiate them (`_target_: reid.losses.X`)."""

from torch import Tensor, nn

from reid.distributed import gather_batch
from reid.losses.triplet import (
    TripletStats,
    batch_all_triplet_loss,
    batch_hard_soft_margin_loss,
    batch_hard_triplet_loss,
)


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
