"""Validation metrics from the embeddings a LightningModule collected per validation loader.

An evaluator is called once per validation with `{dataloader_idx: ValidationSet}` and returns metric
names (without the `val/` prefix) and values. Which loaders exist is the datamodule's business, what
they mean is the evaluator's: the module only embeds and collects. Every evaluator also names the
test-time augmentation the images are embedded with (`tta`, see `reid.models.tta`), reports
same/different-identity pair statistics at `far` (`reid.retrieval.verification`) and keeps the latest
ones, histograms included, as `last_verification` for the figure.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from reid.errors import ConfigError
from reid.retrieval.ranking import (
    RankMetrics,
    feature_rank_metrics,
    knn_accuracy,
    leave_one_out_retrieval,
    rank_metrics,
)
from reid.retrieval.unseen_classes import DEFAULT_KS, LeaveOneOut, unseen_class_metrics
from reid.retrieval.verification import Verification, class_pair_statistics, query_gallery_pair_statistics


@dataclass(frozen=True)
class ValidationSet:
    """Embeddings (N, D) of one validation loader and the batch fields that followed the images, each (N,)."""

    embeddings: Tensor
    fields: tuple[Tensor, ...]


class PairStatistics:
    """What every evaluator shares: its test-time augmentation (`tta`), the FAR its verification threshold
    is set at (`far`), and the verification of its latest call (`last_verification`)."""

    def __init__(self, tta: str | None = None, far: float = 1e-3):
        if not 0 < far < 1:
            raise ConfigError(f"evaluator.far={far} must be a false accept rate between 0 and 1, e.g. 1e-3.")
        self.tta, self.far = tta, far
        self.last_verification: Verification | None = None

    def verified(self, verification: Verification) -> dict[str, float]:
        """Keep `verification` as the latest and return its metrics."""
        self.last_verification = verification
        return verification.metrics()


class ClassRetrievalEvaluator(PairStatistics):
    """Class-labelled data (MNIST): loader 0 = test split (images, labels), loader 1 = train reference set.

    `precision_at_1` and `mAP`: leave-one-out retrieval within the test split; `knn_accuracy`: each test
    image classified by a `knn_k`-NN vote among the reference images; verification over all pairs of
    test images.
    """

    def __init__(self, knn_k: int = 5, tta: str | None = None, far: float = 1e-3):
        super().__init__(tta, far)
        self.knn_k = knn_k

    def __call__(self, sets: dict[int, ValidationSet]) -> dict[str, float]:
        test = sets[0]
        metrics = leave_one_out_retrieval(test.embeddings, test.fields[0])
        if 1 in sets:
            ref = sets[1]
            metrics["knn_accuracy"] = knn_accuracy(
                test.embeddings, test.fields[0], ref.embeddings, ref.fields[0], k=self.knn_k
            )
        return metrics | self.verified(class_pair_statistics(test.embeddings, test.fields[0], self.far))


class UnseenClassEvaluator(PairStatistics):
    """Test classes unseen in training (CUB-200, SOP, own folders): loader 0 = test images (images, labels).

    Returns `recall_at_{k}` for each k in `ks`, `map_at_r`, `r_precision`, `nmi` (unless `nmi` is false:
    k-means into thousands of classes is slow) and `num_query` (`reid.retrieval.unseen_classes`), the
    verification over all pairs of test images, and `mAP`, the leave-one-out mAP over whole rankings as
    `ClassRetrievalEvaluator` computes it, so that `val/mAP` (the default `optimized_metric`, which
    checkpoints and sweeps select on) exists for every kind of data. `seed` seeds the k-means of NMI.
    """

    def __init__(
        self,
        ks: tuple[int, ...] = DEFAULT_KS,
        tta: str | None = None,
        far: float = 1e-3,
        nmi: bool = True,
        seed: int = 0,
    ):
        super().__init__(tta, far)
        self.ks, self.nmi, self.seed = tuple(ks), nmi, seed

    def __call__(self, sets: dict[int, ValidationSet]) -> dict[str, float]:
        return self.evaluate(sets[0])

    def evaluate(self, test: ValidationSet, ranked: LeaveOneOut | None = None) -> dict[str, float]:
        """The metrics of a test set (embeddings, (labels,)); `ranked`: its `leave_one_out`, if at hand."""
        embeddings, labels = test.embeddings, test.fields[0]
        metrics = unseen_class_metrics(embeddings, labels, self.ks, self.nmi, self.seed, ranked)
        metrics["mAP"] = leave_one_out_retrieval(embeddings, labels)["mAP"]
        return metrics | self.verified(class_pair_statistics(embeddings, labels, self.far))


POOLINGS = ("mean", "max")


def pool_tracklets(
    embeddings: Tensor,
    tracklet_ids: Tensor,
    num_tracklets: int,
    pooling: str = "mean",
    normalize: bool = False,
) -> Tensor:
    """Frame embeddings (N, D) -> tracklet features (T, D) by mean or max over each tracklet's frames.

    `tracklet_ids` (N,) index 0..T-1; with `normalize` the pooled features are L2-normalised (the MARS
    official code max-pools and normalises; Hermans et al. average without normalising).
    """
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling={pooling!r} is not supported; use one of {', '.join(POOLINGS)}.")
    index = tracklet_ids.long().unsqueeze(1).expand_as(embeddings)
    pooled = embeddings.new_zeros(num_tracklets, embeddings.shape[1])
    pooled.scatter_reduce_(
        0, index, embeddings, reduce="mean" if pooling == "mean" else "amax", include_self=False
    )
    return torch.nn.functional.normalize(pooled, dim=1) if normalize else pooled


@dataclass(frozen=True)
class Tracklets:
    """Pooled tracklet features (T, D) with their pids and camids (T,), as numpy-friendly tensors."""

    features: Tensor
    pids: Tensor
    camids: Tensor


def tracklets_of(frames: ValidationSet, pooling: str, normalize: bool) -> Tracklets:
    """Pool a loader of (images, pids, camids, tracklet_ids) frames into its tracklets."""
    pids, camids, tracklet_ids = frames.fields[:3]
    num = int(tracklet_ids.max()) + 1
    features = pool_tracklets(frames.embeddings, tracklet_ids, num, pooling, normalize)
    first = torch.full((num,), len(tracklet_ids), dtype=torch.long)
    first.scatter_reduce_(0, tracklet_ids.long(), torch.arange(len(tracklet_ids)), reduce="amin")
    return Tracklets(features, pids[first], camids[first])


class TrackletRankEvaluator(PairStatistics):
    """Video re-ID (MARS): loader 0 = query frames, loader 1 = gallery frames, each batch
    (images, pids, camids, tracklet_ids); tracklet features are pooled frame embeddings.

    Returns `mAP` and `rank{k}` for each k in `ranks` (CMC), plus `num_valid_query`, and the verification
    of the query-gallery pairs the ranking counts. `ap="trapezoid"` with `junk_pid=-1` is the official
    MARS protocol; `ap="step"` without junk is torchreid's.
    """

    def __init__(
        self,
        pooling: str = "mean",
        normalize: bool = False,
        ap: str = "step",
        junk_pid: int | None = None,
        ranks: tuple[int, ...] = (1, 5, 10, 20),
        tta: str | None = None,
        far: float = 1e-3,
    ):
        super().__init__(tta, far)
        self.pooling, self.normalize, self.ap = pooling, normalize, ap
        self.junk_pid = junk_pid
        self.ranks = tuple(ranks)

    def __call__(self, sets: dict[int, ValidationSet]) -> dict[str, float]:
        query, gallery = self.pool(sets[0]), self.pool(sets[1])
        return self.rank(query, gallery) | self.verified(self.verification(query, gallery))

    def verification(
        self, query: Tracklets, gallery: Tracklets, distmat: np.ndarray | None = None
    ) -> Verification:
        """Pair statistics of the query-gallery pairs the ranking counts (by `distmat` (Q, G) when given)."""
        g_pids = gallery.pids.numpy()
        return query_gallery_pair_statistics(
            query.features,
            gallery.features,
            query.pids,
            g_pids,
            query.camids,
            gallery.camids,
            self.junk_mask(g_pids),
            self.far,
            distmat,
        )

    def ranking(self, query: Tracklets, gallery: Tracklets, distmat: np.ndarray | None = None) -> RankMetrics:
        """`RankMetrics` (the whole CMC curve to rank max(`ranks`), mAP, valid queries) of `rank`."""
        g_pids = gallery.pids.numpy()
        labels = dict(
            q_pids=query.pids.numpy(),
            g_pids=g_pids,
            q_camids=query.camids.numpy(),
            g_camids=gallery.camids.numpy(),
            max_rank=max(self.ranks),
            ap=self.ap,
            g_junk=self.junk_mask(g_pids),
        )
        if distmat is None:
            return feature_rank_metrics(query.features, gallery.features, **labels)
        return rank_metrics(distmat, **labels)

    def pool(self, frames: ValidationSet) -> Tracklets:
        """One loader's frames pooled into its tracklets, with this evaluator's pooling and normalisation."""
        return tracklets_of(frames, self.pooling, self.normalize)

    def junk_mask(self, g_pids: np.ndarray) -> np.ndarray:
        """(G,) bool: the gallery tracklets the protocol skips (pid `junk_pid`); all False without junk."""
        return np.zeros(len(g_pids), dtype=bool) if self.junk_pid is None else g_pids == self.junk_pid

    def rank(
        self, query: Tracklets, gallery: Tracklets, distmat: np.ndarray | None = None
    ) -> dict[str, float]:
        """Metrics of query against gallery tracklets, ranked by the Euclidean distance of their features
        or, when given, by `distmat` (Q, G) (e.g. re-ranked distances)."""
        return self.summarise(self.ranking(query, gallery, distmat))

    def summarise(self, result: RankMetrics) -> dict[str, float]:
        """`mAP`, `rank{k}` for each k in `ranks`, and `num_valid_query` of a ranking's results."""
        metrics = {"mAP": float(result.mAP)}
        metrics.update({f"rank{k}": float(result.cmc[min(k, len(result.cmc)) - 1]) for k in self.ranks})
        metrics["num_valid_query"] = float(result.num_valid_query)
        return metrics


# How each MARS protocol ranks (docs/mars.md): the parser already built its query and gallery lists.
PROTOCOL_RULES = {
    "official": {"ap": "trapezoid", "junk_pid": -1},  # MARS-evaluation (MATLAB): junk skipped, trapezoid AP
    "torchreid": {"ap": "step", "junk_pid": None},  # junk dropped by the parser; sklearn's step AP
}


def protocol_evaluator(
    protocol: str,
    pooling: str = "mean",
    normalize: bool = False,
    tta: str | None = None,
    far: float = 1e-3,
) -> TrackletRankEvaluator:
    """The `TrackletRankEvaluator` of a MARS protocol ("official" or "torchreid", as `dataset.protocol`).

    Pooling and normalisation stay free: the official code max-pools and normalises, Hermans et al. average.
    """
    if protocol not in PROTOCOL_RULES:
        raise ConfigError(
            f"protocol={protocol!r} is not a MARS evaluation protocol; set dataset.protocol to one of "
            f"{', '.join(PROTOCOL_RULES)}."
        )
    rules = PROTOCOL_RULES[protocol]
    return TrackletRankEvaluator(pooling=pooling, normalize=normalize, tta=tta, far=far, **rules)


class ImageRetrievalEvaluator(TrackletRankEvaluator):
    """Own images (image_folder, csv), whose layout decides the kind: two loaders (query, gallery; batches
    (images, pids, camids, tracklet_ids) with one image per tracklet) are ranked as re-ID with step AP and
    no junk, as torchreid; one loader (images, labels) gets `UnseenClassEvaluator`'s metrics."""

    def __init__(
        self,
        ks: tuple[int, ...] = DEFAULT_KS,
        ranks: tuple[int, ...] = (1, 5, 10, 20),
        tta: str | None = None,
        far: float = 1e-3,
        nmi: bool = True,
        seed: int = 0,
    ):
        super().__init__(ap="step", ranks=ranks, tta=tta, far=far)
        self.unseen = UnseenClassEvaluator(ks, tta, far, nmi, seed)

    def __call__(self, sets: dict[int, ValidationSet]) -> dict[str, float]:
        return super().__call__(sets) if 1 in sets else self.evaluate(sets[0])

    @property
    def ks(self) -> tuple[int, ...]:
        return self.unseen.ks

    def evaluate(self, test: ValidationSet, ranked: LeaveOneOut | None = None) -> dict[str, float]:
        """`UnseenClassEvaluator.evaluate` of one test list."""
        metrics = self.unseen.evaluate(test, ranked)
        self.last_verification = self.unseen.last_verification
        return metrics
