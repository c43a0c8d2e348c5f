"""Datasets, samplers, decoding and caches: plain torch and numpy, usable without Lightning or Hydra."""

from reid.data.augment import RandomCropFlip
from reid.data.digits import load_digits_splits
from reid.data.frame_cache import FrameCache, build_cache
from reid.data.images import GreyImages, ImageSplits
from reid.data.jpeg import decode_frame
from reid.data.loaders import WorkerErrorLoader
from reid.data.mars import MarsFrameDataset, MarsSplits, Tracklet, load_mars
from reid.data.mnist import FASHION_MNIST, MNIST, load_idx_splits
from reid.data.samplers import PKSampler, SeededBatch

__all__ = [
    "FASHION_MNIST",
    "MNIST",
    "FrameCache",
    "GreyImages",
    "ImageSplits",
    "MarsFrameDataset",
    "MarsSplits",
    "PKSampler",
    "RandomCropFlip",
    "SeededBatch",
    "Tracklet",
    "WorkerErrorLoader",
    "build_cache",
    "decode_frame",
    "load_digits_splits",
    "load_idx_splits",
    "load_mars",
]
