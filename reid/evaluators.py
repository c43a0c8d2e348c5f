"""Validation metrics from the embeddings a LightningModule collected per validation loader.

An evaluator is called once per validation with `{dataloader_idx: ValidationSet}` and returns metric
names (without the `val/` prefix) and values. Which loaders exist is the datamodule's business, what
they mean is the evaluator's: the module only embeds and collects.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from reid.errors import ConfigError
from reid.metrics import feature_rank_metrics, knn_accuracy, leave_one_out_retrieval


@dataclass(frozen=True)
class ValidationSet:
    """Embeddings (N, D) of one validation loader and the batch fields that followed the images, each (N,)."""

    embeddings: Tensor
    fields: tuple[Tensor, ...]


class ClassRetrievalEvaluator:
    """Class-labelled data (MNIST): loader 0 = test split (images, labels), loader 1 = train reference set.

    `precision_at_1` and `mAP`: leave-one-out retrieval within the test split; `knn_accuracy`: each test
    image classified by a `knn_k`-NN vote among the reference images.
    """

    def __init__(self, knn_k: int = 5):
        self.knn_k = knn_k

    def __call__(self, sets: dict[int, ValidationSet]) -> dict[str, float]:
        test = sets[0]
        metrics = leave_one_out_retrieval(test.embeddings, test.fields[0])
        if 1 in sets:
            ref = sets[1]
            metrics["knn_accuracy"] = knn_accuracy(
                test.embeddings, test.fields[0], ref.embeddings, ref.fields[0], k=self.knn_k
            )
        return metrics


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


class TrackletRankEvaluator:
    """Video re-ID (MARS): loader 0 = query frames, loader 1 = gallery frames, each batch
    (images, pids, camids, tracklet_ids); tracklet features are pooled frame embeddings.

    Returns `mAP` and `rank{k}` for each k in `ranks` (CMC), plus `num_valid_query`. `ap="trapezoid"`
    with `junk_pid=-1` is the official MARS protocol; `ap="step"` without junk is torchreid's.
    """

    def __init__(
        self,
        pooling: str = "mean",
        normalize: bool = False,
        ap: str = "step",
        junk_pid: int | None = None,
        ranks: tuple[int, ...] = (1, 5, 10, 20),
    ):
        self.pooling, self.normalize, self.ap = pooling, normalize, ap
        self.junk_pid = junk_pid
        self.ranks = tuple(ranks)

    def __call__(self, sets: dict[int, ValidationSet]) -> dict[str, float]:
        query = tracklets_of(sets[0], self.pooling, self.normalize)
        gallery = tracklets_of(sets[1], self.pooling, self.normalize)
        g_pids = gallery.pids.numpy()
        result = feature_rank_metrics(
            query.features,
            gallery.features,
            query.pids.numpy(),
            g_pids,
            query.camids.numpy(),
            gallery.camids.numpy(),
            max_rank=max(self.ranks),
            ap=self.ap,
            g_junk=None if self.junk_pid is None else g_pids == self.junk_pid,
        )
        metrics = {"mAP": float(result.mAP)}
        metrics.update({f"rank{k}": float(result.cmc[min(k, len(result.cmc)) - 1]) for k in self.ranks})
        metrics["num_valid_query"] = float(result.num_valid_query)
        return metrics
