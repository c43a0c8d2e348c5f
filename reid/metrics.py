"""The ranking metrics under their long-standing import path: `from reid.metrics import evaluate_rank`.

They live in `reid.retrieval.ranking`; this module only names them here for the code that imports them so.
"""

from reid.retrieval.distances import euclidean_distances
from reid.retrieval.ranking import (
    RankMetrics,
    evaluate_features,
    evaluate_rank,
    feature_rank_metrics,
    knn_accuracy,
    leave_one_out_retrieval,
    rank_metrics,
)

__all__ = [
    "RankMetrics",
    "euclidean_distances",
    "evaluate_features",
    "evaluate_rank",
    "feature_rank_metrics",
    "knn_accuracy",
    "leave_one_out_retrieval",
    "rank_metrics",
]
