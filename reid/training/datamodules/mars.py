"""MARS as a LightningDataModule: PK batches of training frames, query and gallery frames for ranking.

Training draws P identities x K frames from `bbox_train` (the frames of an identity pooled over all its
tracklets and cameras, with replacement when it has fewer than K). Validation and testing embed the frames
of the query and gallery tracklets of `protocol`; batches are (images, pids, camids, tracklet_ids), which
`reid.retrieval.TrackletRankEvaluator` pools into tracklets. Validation during training may take a few
evenly spaced frames per tracklet (`val_frames_per_tracklet`); testing always takes them all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from rich.console import Console
from torch.utils.data import DataLoader

from reid.data.augment import RandomCropFlip
from reid.data.frame_cache import FrameCache, default_cache_dir, prepare_command
from reid.data.loaders import WorkerErrorLoader
from reid.data.mars import MarsFrameDataset, MarsSplits, Tracklet, load_mars, sample_frames, to_unit_float
from reid.errors import ConfigError, DataError
from reid.training.datamodules.resume import ResumablePKDataModule


class MarsDataModule(ResumablePKDataModule):
    """The MARS release at `root`, split by `protocol`, served as frames: query/gallery data (`kind`).

    Args:
        root: the folder holding `bbox_train/`, `bbox_test/` and `info/`.
        protocol: "official" (MARS-evaluation) or "torchreid"; decides the query and gallery tracklets.
        skip_bad_frames: skip missing or unreadable frames instead of failing (they are counted and logged).
        P, K: identities per training batch and frames per identity (batch = P x K).
        batches_per_epoch: training batches per epoch (None: train frames // (P x K)).
        height, width: network input size; frames are resized to it.
        flip: random horizontal flip of training frames.
        crop_scale: resize training frames to crop_scale x (height, width) and take a random height x width
            crop (the paper: 1.125); 1 turns cropping off.
        val_frames_per_tracklet: evenly spaced frames per tracklet embedded at validation (None: all), so
            that validating during training stays cheap; testing uses every frame.
        eval_batch_size: frames per batch when embedding query and gallery.
        num_workers: DataLoader worker processes (persistent between epochs; pinned memory on a GPU).
        seed: seeds the PK sampler (with the epoch), and through it each batch's augmentation; a checkpoint
            records where the PK batches stand, so a resumed run continues mid-epoch exactly.
        cache: read frames from the prepared frame caches (`scripts/prepare_mars.py`) instead of decoding
            JPEGs; training needs the cache of its decode size, evaluation the one of (height, width).
        cache_dir: where the caches are (None: `<root>/cache`).
    """

    kind = "query_gallery"
    name = "MARS"

    def __init__(
        self,
        root: str,
        protocol: str = "official",
        skip_bad_frames: bool = False,
        P: int = 32,
        K: int = 4,
        batches_per_epoch: int | None = None,
        height: int = 128,
        width: int = 64,
        flip: bool = False,
        crop_scale: float = 1.0,
        val_frames_per_tracklet: int | None = 8,
        eval_batch_size: int = 256,
        num_workers: int = 4,
        seed: int = 0,
        cache: bool = False,
        cache_dir: str | None = None,
    ):
        super().__init__()
        if crop_scale < 1:
            raise ConfigError(
                f"dataset.crop_scale={crop_scale}: frames are resized to crop_scale x the input size and "
                "cropped back, so it must be >= 1 (1 = no crop; the paper uses 1.125)."
            )
        if val_frames_per_tracklet is not None and val_frames_per_tracklet < 1:
            raise ConfigError(
                f"dataset.val_frames_per_tracklet={val_frames_per_tracklet}: validation needs at least 1 "
                "frame per tracklet; set a positive number, or null for every frame."
            )
        self.root, self.protocol, self.skip_bad_frames = root, protocol, skip_bad_frames
        self.P, self.K, self.batches_per_epoch = P, K, batches_per_epoch
        self.height, self.width = height, width
        self.flip, self.crop_scale = flip, crop_scale
        self.val_frames_per_tracklet = val_frames_per_tracklet
        self.eval_batch_size, self.num_workers, self.seed = eval_batch_size, num_workers, seed
        self.cache, self.cache_dir = cache, cache_dir or default_cache_dir(root)
        self.splits: MarsSplits | None = None
        self.caches: dict[tuple[int, int], FrameCache] = {}

    def setup(self, stage: str | None = None) -> None:
        """Parse and check the release once (every check raises a `DataError`) and print its counts."""
        if self.splits is not None:
            return
        self.splits = load_mars(self.root, self.protocol, self.skip_bad_frames)
        Console().print(self.splits.summary())
        if self.cache:
            self.caches = self._open_caches()
        for tracklets in (self.splits.train, self.splits.query):  # decode one frame here, not in a worker
            if tracklets:
                self._frames(tracklets[:1])[0]

    def train_dataloader(self) -> DataLoader:
        """PK batches of training frames: (images (P*K, 3, H, W) uint8, pids, camids, tracklet_ids)."""
        frames = self._frames(self.splits.train, *self._train_size(), transform=self._augmentation())
        return self._loader(frames, **self.pk_loader_args(frames.pids))

    def val_dataloader(self) -> list[DataLoader]:
        """[query frames, gallery frames], `val_frames_per_tracklet` of each tracklet."""
        return self._ranking_loaders(self.val_frames_per_tracklet)

    def test_dataloader(self) -> list[DataLoader]:
        """[query frames, gallery frames], every frame of each tracklet."""
        return self._ranking_loaders(None)

    def _ranking_loaders(self, frames_per_tracklet: int | None) -> list[DataLoader]:
        loaders = []
        for tracklets in (self.splits.query, self.splits.gallery):
            if frames_per_tracklet is not None:
                tracklets = [sample_frames(t, frames_per_tracklet) for t in tracklets]
            loaders.append(self._loader(self._frames(tracklets), batch_size=self.eval_batch_size))
        return loaders

    def on_after_batch_transfer(self, batch: list, dataloader_idx: int) -> list:
        """Scale the uint8 images to float [0, 1] on the device, after the (4x smaller) copy."""
        return [to_unit_float(batch[0]), *batch[1:]]

    def _train_size(self) -> tuple[int, int]:
        """(height, width) training frames are decoded at: the input size times `crop_scale`."""
        return round(self.height * self.crop_scale), round(self.width * self.crop_scale)

    def _open_caches(self) -> dict[tuple[int, int], FrameCache]:
        """The frame caches of the training and evaluation sizes (a `DataError` naming the build command)."""
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

    def _augmentation(self) -> RandomCropFlip | None:
        """Random crop back to (height, width) when frames are decoded larger, random flip; or nothing."""
        if self.crop_scale == 1 and not self.flip:
            return None
        return RandomCropFlip(self.height, self.width, self.flip)

    def _frames(
        self,
        tracklets: Sequence[Tracklet],
        height: int | None = None,
        width: int | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> MarsFrameDataset:
        size = height or self.height, width or self.width
        return MarsFrameDataset(tracklets, *size, transform, self.skip_bad_frames, self.caches.get(size))

    def _loader(self, dataset: MarsFrameDataset, **kwargs) -> DataLoader:
        return WorkerErrorLoader(
            dataset,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            **kwargs,
        )
