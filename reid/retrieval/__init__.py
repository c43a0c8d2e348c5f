"""Retrieval on embeddings: distances, ranking metrics (CMC, mAP, k-NN), re-ranking and the evaluators
that turn validation embeddings into metrics. Plain torch and numpy: usable without Lightning or Hydra."""

from reid.retrieval.distances import euclidean_distances
from reid.retrieval.evaluators import (
    ClassRetrievalEvaluator,
    TrackletRankEvaluator,
    Tracklets,
    ValidationSet,
    pool_tracklets,
    protocol_evaluator,
)
from reid.retrieval.ranking import (
    RankMetrics,
    evaluate_features,
    evaluate_rank,
    feature_rank_metrics,
    knn_accuracy,
    leave_one_out_retrieval,
    rank_metrics,
)
from reid.retrieval.rerank import re_ranking

__all__ = [
    "ClassRetrievalEvaluator",
    "RankMetrics",
    "TrackletRankEvaluator",
    "Tracklets",
    "ValidationSet",
    "euclidean_distances",
    "evaluate_features",
    "evaluate_rank",
    "feature_rank_metrics",
    "knn_accuracy",
    "leave_one_out_retrieval",
    "pool_tracklets",
    "protocol_evaluator",
    "rank_metrics",
    "re_ranking",
]
