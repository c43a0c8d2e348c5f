"""Triplet losses on a batch of embeddings: pure functions of (embeddings, labels) and module wrappers."""

from reid.losses.modules import BatchAllTripletLoss, BatchHardTripletLoss, SoftMarginTripletLoss
from reid.losses.triplet import (
    TripletStats,
    batch_all_triplet_loss,
    batch_hard_soft_margin_loss,
    batch_hard_triplet_loss,
)

__all__ = [
    "BatchAllTripletLoss",
    "BatchHardTripletLoss",
    "SoftMarginTripletLoss",
    "TripletStats",
    "batch_all_triplet_loss",
    "batch_hard_soft_margin_loss",
    "batch_hard_triplet_loss",
]
