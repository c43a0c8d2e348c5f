"""Retrieval on embeddings: distances, ranking metrics (CMC, mAP, k-NN, unseen-class Recall@K and MAP@R),
verification statistics, re-ranking and the evaluators
that turn validation embeddings into metrics. Plain torch and numpy: usable without Lightning or Hydra."""

from reid.retrieval.distances import euclidean_distances
from reid.retrieval.evaluators import (
    ClassRetrievalEvaluator,
    ImageRetrievalEvaluator,
    TrackletRankEvaluator,
    Tracklets,
    UnseenClassEvaluator,
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
from reid.retrieval.unseen_classes import unseen_class_metrics
from reid.retrieval.verification import Verification, class_pair_statistics, query_gallery_pair_statistics

__all__ = [
    "ClassRetrievalEvaluator",
    "ImageRetrievalEvaluator",
    "RankMetrics",
    "TrackletRankEvaluator",
    "Tracklets",
    "UnseenClassEvaluator",
    "ValidationSet",
    "Verification",
    "class_pair_statistics",
    "euclidean_distances",
    "evaluate_features",
    "evaluate_rank",
    "feature_rank_metrics",
    "knn_accuracy",
    "leave_one_out_retrieval",
    "pool_tracklets",
    "protocol_evaluator",
    "query_gallery_pair_statistics",
    "rank_metrics",
    "re_ranking",
    "unseen_class_metrics",
]
