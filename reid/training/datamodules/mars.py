"""MARS as a LightningDataModule: PK batches of training frames, query and gallery frames for ranking.

Training draws P identities x K frames from `bbox_train` (the frames of an identity pooled over all its
tracklets and cameras, with replacement when it has fewer than K). Validation and testing embed the frames
of the query and gallery tracklets of `protocol`; batches are (images, pids, camids, tracklet_ids), which
`reid.retrieval.TrackletRankEvaluator` pools into tracklets. Validation during training may take a few
evenly spaced frames per tracklet (`val_frames_per_tracklet`); testing always takes them all.
"""

from __future__ import annotations

from reid.data.frame_cache import FrameCache, default_cache_dir, prepare_command
from reid.data.mars import MarsSplits, load_mars
from reid.errors import DataError
from reid.training.datamodules.images import ImagesDataModule


class MarsDataModule(ImagesDataModule):
    """The MARS release at `root`, split by `protocol`, served as frames.

    Args:
        root: the folder holding `bbox_train/`, `bbox_test/` and `info/`.
        protocol: "official" (MARS-evaluation) or "torchreid"; decides the query and gallery tracklets.
        skip_bad_frames: skip missing or unreadable frames instead of failing (they are counted and logged).
        val_frames_per_tracklet: evenly spaced frames per tracklet embedded at validation (None: all).
        cache: read frames from the prepared frame caches (`scripts/prepare_mars.py`) instead of decoding
            JPEGs; training needs the cache of its decode size, evaluation the one of (height, width).
        cache_dir: where the caches are (None: `<root>/cache`).
        **kwargs: P, K, batches_per_epoch, height, width, flip, crop_scale, eval_batch_size, num_workers,
            seed: see `ImagesDataModule`.
    """

    def __init__(
        self,
        root: str,
        protocol: str = "official",
        skip_bad_frames: bool = False,
        val_frames_per_tracklet: int | None = 8,
        cache: bool = False,
        cache_dir: str | None = None,
        **kwargs,
    ):
        super().__init__(val_frames_per_tracklet=val_frames_per_tracklet, **kwargs)
        self.root, self.protocol, self.skip_bad_frames = root, protocol, skip_bad_frames
        self.cache, self.cache_dir = cache, cache_dir or default_cache_dir(root)

    def load_splits(self) -> MarsSplits:
        return load_mars(self.root, self.protocol, self.skip_bad_frames)

    def dataset_options(self) -> dict:
        """The frames' own unreadable-frame hint (it names dataset.skip_bad_frames)."""
        return {}

    def open_caches(self) -> dict[tuple[int, int], FrameCache]:
        """The frame caches of the training and evaluation sizes (a `DataError` naming the build command)."""
        if not self.cache:
            return {}
        sizes = list(dict.fromkeys([self._train_size(), (self.height, self.width)]))
        try:
            return {size: FrameCache.open(self.root, self.cache_dir, *size) for size in sizes}
        except DataError as error:
            if len(sizes) == 1:
                raise
            raise DataError(
                f"{error} This config needs the sizes {sizes}; build both at once with "
                f"`{prepare_command(self.root, self.cache_dir, sizes)}`."
            ) from None
