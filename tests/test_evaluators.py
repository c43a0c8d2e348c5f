"""The evaluators as validation calls them: each kind of data gets its metrics and verification."""

import numpy as np
import pytest
import torch

from reid.errors import ConfigError
from reid.retrieval.evaluators import (
    ImageRetrievalEvaluator,
    TrackletRankEvaluator,
    UnseenClassEvaluator,
    ValidationSet,
)
from reid.retrieval.ranking import leave_one_out_retrieval, rank_metrics
from reid.retrieval.unseen_classes import unseen_class_metrics
from reid.retrieval.verification import class_pair_statistics, query_gallery_pair_statistics


def image_loader(rng, n: int) -> ValidationSet:
    """n images (one per tracklet) of 6 identities in 3 cameras: embeddings, (pids, camids, tracklet_ids)."""
    pids = torch.from_numpy(rng.integers(0, 6, n))
    embeddings = (
        torch.nn.functional.one_hot(pids, 6).float() + torch.from_numpy(rng.normal(0, 0.6, (n, 6))).float()
    )
    return ValidationSet(embeddings, (pids, torch.from_numpy(rng.integers(0, 3, n)), torch.arange(n)))


def test_image_retrieval_with_query_and_gallery_ranks_with_step_ap_and_no_junk():
    rng = np.random.default_rng(0)
    query, gallery = image_loader(rng, 20), image_loader(rng, 50)
    evaluator = ImageRetrievalEvaluator(far=0.01)
    metrics = evaluator({0: query, 1: gallery})
    assert metrics == TrackletRankEvaluator(ap="step", far=0.01)({0: query, 1: gallery})
    q, g = (s.fields for s in (query, gallery))
    distances = torch.cdist(query.embeddings, gallery.embeddings).numpy()
    reference = rank_metrics(distances, q[0], g[0], q[1], g[1], max_rank=20, ap="step")
    assert metrics["mAP"] == pytest.approx(reference.mAP, abs=1e-6)
    assert metrics["rank1"] == pytest.approx(reference.cmc[0])
    expected = query_gallery_pair_statistics(
        query.embeddings, gallery.embeddings, q[0], g[0], q[1], g[1], far=0.01
    )
    assert metrics["roc_auc"] == pytest.approx(expected.roc_auc)
    assert evaluator.last_verification.num_positive == expected.num_positive


def test_image_retrieval_with_one_test_list_gives_the_unseen_class_metrics():
    rng = np.random.default_rng(1)
    test = image_loader(rng, 40)
    test = ValidationSet(test.embeddings, test.fields[:1])  # (images, labels) batches
    evaluator = ImageRetrievalEvaluator(ks=(1, 4))
    metrics = evaluator({0: test})
    expected = unseen_class_metrics(test.embeddings, test.fields[0], ks=(1, 4))
    expected |= class_pair_statistics(test.embeddings, test.fields[0]).metrics()
    expected["mAP"] = leave_one_out_retrieval(test.embeddings, test.fields[0])["mAP"]  # as for MNIST
    assert metrics == pytest.approx(expected) and metrics == UnseenClassEvaluator(ks=(1, 4))({0: test})
    assert evaluator.last_verification is not None and "recall_at_4" in metrics and "rank1" not in metrics


def test_far_outside_zero_one_is_refused():
    with pytest.raises(ConfigError, match="evaluator.far"):
        UnseenClassEvaluator(far=1.0)
