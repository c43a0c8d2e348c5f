"""Image files on disk as a LightningDataModule: PK training batches, then query/gallery ranking (re-ID:
MARS, Market-1501, own query/gallery sets) or retrieval of unseen classes (CUB-200, SOP, own folders).

Subclasses only parse their dataset (`load_splits`); this base serves it:
- `kind = "query_gallery"` (`load_splits` returns `MarsSplits`): training batches (images, pids, camids,
  tracklet_ids); validation and testing return [query loader, gallery loader] of the same fields, which
  `reid.retrieval.TrackletRankEvaluator` pools into tracklets (an image is a one-frame tracklet).
- `kind = "unseen_classes"` (`ClassSplits`): training batches (images, labels); validation and testing
  return one loader [test images] of (images, labels); `test_paths` lists its images in loader order.
Images stay uint8 up to the device, where `on_after_batch_transfer` scales them to [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from rich.console import Console
from torch.utils.data import DataLoader

from reid.data.augment import RandomCropFlip
from reid.data.class_splits import ClassSplits, LabelledImageDataset
from reid.data.frame_cache import FrameCache
from reid.data.loaders import WorkerErrorLoader
from reid.data.mars import MarsFrameDataset, MarsSplits, Tracklet, sample_frames, to_unit_float
from reid.errors import ConfigError
from reid.training.datamodules.resume import ResumablePKDataModule


class ImagesDataModule(ResumablePKDataModule):
    """Base of the datamodules of image files; subclasses implement `load_splits`.

    Args:
        P, K: identities (classes) per training batch and images per identity (batch = P x K); an identity
            with fewer than K images is drawn with replacement.
        batches_per_epoch: training batches per epoch (None: train images // (P x K)).
        height, width: network input size; images are resized to it.
        flip: random horizontal flip of training images.
        crop_scale: resize training images to crop_scale x (height, width) and take a random height x width
            crop (the paper: 1.125); 1 turns cropping off.
        val_frames_per_tracklet: evenly spaced frames per tracklet embedded at validation (None: all), so
            that validating video data during training stays cheap; testing uses every frame.
        eval_batch_size: images per batch when embedding test images.
        num_workers: DataLoader worker processes (persistent between epochs; pinned memory on a GPU).
        seed: seeds the PK sampler (with the epoch), and through it each batch's augmentation; a checkpoint
            records where the PK batches stand, so a resumed run continues mid-epoch exactly.
    """

    def __init__(
        self,
        P: int = 32,
        K: int = 4,
        batches_per_epoch: int | None = None,
        height: int = 128,
        width: int = 64,
        flip: bool = False,
        crop_scale: float = 1.0,
        val_frames_per_tracklet: int | None = None,
        eval_batch_size: int = 256,
        num_workers: int = 4,
        seed: int = 0,
    ):
        super().__init__()
        if crop_scale < 1:
            raise ConfigError(
                f"dataset.crop_scale={crop_scale}: images are resized to crop_scale x the input size and "
                "cropped back, so it must be >= 1 (1 = no crop; the paper uses 1.125)."
            )
        if val_frames_per_tracklet is not None and val_frames_per_tracklet < 1:
            raise ConfigError(
                f"dataset.val_frames_per_tracklet={val_frames_per_tracklet}: validation needs at least 1 "
                "frame per tracklet; set a positive number, or null for every frame."
            )
        self.P, self.K, self.batches_per_epoch = P, K, batches_per_epoch
        self.height, self.width = height, width
        self.flip, self.crop_scale = flip, crop_scale
        self.val_frames_per_tracklet = val_frames_per_tracklet
        self.eval_batch_size, self.num_workers, self.seed = eval_batch_size, num_workers, seed
        self.splits: MarsSplits | ClassSplits | None = None
        self.caches: dict[tuple[int, int], FrameCache] = {}
        self.skip_bad_frames = False

    def load_splits(self) -> MarsSplits | ClassSplits:
        """Parse and check the dataset (every problem raises a `DataError` naming the file)."""
        raise NotImplementedError

    def open_caches(self) -> dict[tuple[int, int], FrameCache]:
        """Prepared frame caches by (height, width), read instead of decoding image files: none here."""
        return {}

    @property
    def kind(self) -> str:
        """ "query_gallery" or "unseen_classes" (known once `setup` has parsed the dataset)."""
        return "unseen_classes" if isinstance(self.splits, ClassSplits) else "query_gallery"

    @property
    def name(self) -> str:
        """The dataset's name as its parser gives it ("MARS", "Market-1501", ...; known once `setup` ran)."""
        return self.splits.dataset

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the labels where the dataset has them (class folders, CUB's classes), else ()."""
        return getattr(self.splits, "class_names", ())

    @property
    def test_paths(self) -> list[str]:
        """The images of the unseen-classes test loader, in loader order."""
        return [path for image in self.splits.test for path in image.paths]

    def setup(self, stage: str | None = None) -> None:
        """Parse and check the dataset once, print its counts and decode one image here, not in a worker."""
        if self.splits is not None:
            return
        self.splits = self.load_splits()
        Console().print(self.splits.summary())
        self.caches = self.open_caches()
        evaluated = self.splits.test if self.kind == "unseen_classes" else self.splits.query
        for images in (self.splits.train, evaluated):
            if images:
                self._dataset(images[:1])[0]

    def train_dataloader(self) -> DataLoader:
        """PK batches of training images: (images (P*K, 3, H, W) uint8, pids, camids, tracklet_ids), or
        (images, labels) for unseen classes."""
        images = self._dataset(self.splits.train, *self._train_size(), transform=self._augmentation())
        return self._loader(images, **self.pk_loader_args(images.pids))

    def val_dataloader(self) -> list[DataLoader]:
        """[query, gallery] (`val_frames_per_tracklet` of each tracklet) or [test images]."""
        return self._test_loaders(self.val_frames_per_tracklet)

    def test_dataloader(self) -> list[DataLoader]:
        """[query, gallery] (every frame of each tracklet) or [test images]."""
        return self._test_loaders(None)

    def _test_loaders(self, frames_per_tracklet: int | None) -> list[DataLoader]:
        if self.kind == "unseen_classes":
            return [self._loader(self._dataset(self.splits.test), batch_size=self.eval_batch_size)]
        loaders = []
        for tracklets in (self.splits.query, self.splits.gallery):
            if frames_per_tracklet is not None:
                tracklets = [sample_frames(t, frames_per_tracklet) for t in tracklets]
            loaders.append(self._loader(self._dataset(tracklets), batch_size=self.eval_batch_size))
        return loaders

    def on_after_batch_transfer(self, batch: list, dataloader_idx: int) -> list:
        """Scale the uint8 images to float [0, 1] on the device, after the (4x smaller) copy."""
        return [to_unit_float(batch[0]), *batch[1:]]

    def _train_size(self) -> tuple[int, int]:
        """(height, width) training images are decoded at: the input size times `crop_scale`."""
        return round(self.height * self.crop_scale), round(self.width * self.crop_scale)

    def _augmentation(self) -> RandomCropFlip | None:
        """Random crop back to (height, width) when images are decoded larger, random flip; or nothing."""
        if self.crop_scale == 1 and not self.flip:
            return None
        return RandomCropFlip(self.height, self.width, self.flip)

    def _dataset(
        self,
        tracklets: Sequence[Tracklet],
        height: int | None = None,
        width: int | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> MarsFrameDataset:
        size = height or self.height, width or self.width
        if self.kind == "unseen_classes":
            return LabelledImageDataset(tracklets, *size, transform)
        return MarsFrameDataset(
            tracklets, *size, transform, self.skip_bad_frames, self.caches.get(size), **self.dataset_options()
        )

    def dataset_options(self) -> dict:
        """Extra `MarsFrameDataset` arguments: the hint its unreadable-image error ends with."""
        return {
            "unreadable_hint": "Replace the file with a readable image, or re-extract it from the release."
        }

    def _loader(self, dataset: MarsFrameDataset, **kwargs) -> DataLoader:
        return WorkerErrorLoader(
            dataset,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            **kwargs,
        )
