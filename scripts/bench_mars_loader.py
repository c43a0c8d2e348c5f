"""Benchmark the MARS input pipeline against the model it feeds: frames/s per core, ratios to the peer.

    python scripts/bench_mars_loader.py                    # photo-crop frames written to a temp MARS tree
    python scripts/bench_mars_loader.py --root data/MARS   # the real release's bbox_train/ frames

Rows (one thread, one core each unless "cores"):
  decode      `reid.data.jpeg.decode_frame` (JPEG decoded at 1/2 DCT scale) vs the usual peer pipeline
              (torchreid's: PIL `convert("RGB")` + torchvision Resize((128, 64)) + ToTensor)
  cache build scripts/prepare_mars.py's decoding into the memmap, one worker
  loader      PK batches of 32 x 4 from MarsDataModule's own dataset and DataLoader (num_workers=0),
              from JPEGs and from the frame cache; uint8 batches, as they are copied to the device
  model       LuNet training step (forward, batch-hard loss, backward, Adam) at batch 128 on this
              machine's CPU cores, and the rate a 25,000-step run in 15 minutes needs on a GPU
The last column divides a loader's rate by the model's: the loader must stay >= 3x.
Each rate is the best of 3 timed passes; the two decoders take 5 passes each, in turns.

Without --root the frames are 256 x 128 crops of scikit-learn's bundled photos saved at JPEG quality 90
(--quality; about 10 kB each, sharp photo detail), so decode rates are on the conservative side: JPEG
decoding time grows with the bytes to decode.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table
from torchvision.transforms import v2

from reid.data.augment import RandomCropFlip
from reid.data.frame_cache import FrameCache, build_cache
from reid.data.jpeg import decode_frame
from reid.data.loaders import WorkerErrorLoader
from reid.data.mars import MarsFrameDataset, Tracklet
from reid.data.samplers import PKSampler
from reid.losses import BatchHardTripletLoss
from reid.models.lunet import LuNet

HEIGHT, WIDTH, P, K = 128, 64, 32, 4
GPU_TARGET_STEPS, GPU_TARGET_SECONDS = 25_000, 15 * 60


def write_photo_frames(root: Path, identities: int, frames_per_id: int, quality: int, seed: int = 0) -> None:
    """A MARS-layout tree bbox_train/<pid>/<pid>C1T0001F<n>.jpg of 256 x 128 crops of bundled photos."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    for pid in range(1, identities + 1):
        folder = root / "bbox_train" / f"{pid:04d}"
        folder.mkdir(parents=True)
        for n in range(1, frames_per_id + 1):
            photo = photos[rng.integers(len(photos))]
            y, x = rng.integers(photo.shape[0] - 256), rng.integers(photo.shape[1] - 128)
            crop = Image.fromarray(photo[y : y + 256, x : x + 128])
            crop.save(folder / f"{pid:04d}C1T0001F{n:03d}.jpg", quality=quality)
    (root / "bbox_test").mkdir()


def train_tracklets(root: Path) -> list[Tracklet]:
    """One tracklet per identity folder of bbox_train/ (enough structure for PK batches)."""
    tracklets = []
    for folder in sorted((root / "bbox_train").iterdir()):
        paths = tuple(sorted(str(p) for p in folder.glob("*.jpg")))
        if paths:
            tracklets.append(Tracklet(paths, len(tracklets), 0))
    return tracklets


def rates(*runs: Callable[[], int], repeats: int = 3) -> list[float]:
    """Best items/s of `repeats` calls of each `run` (which returns how many items it processed); the runs
    take turns, so a busy spell of the machine slows all of them, not one."""
    best = [0.0] * len(runs)
    for _ in range(repeats):
        for i, run in enumerate(runs):
            start = time.perf_counter()
            items = run()
            best[i] = max(best[i], items / (time.perf_counter() - start))
    return best


def rate(run: Callable[[], int], repeats: int = 3) -> float:
    """Best items/s of `repeats` calls of `run`."""
    return rates(run, repeats=repeats)[0]


def peer_decode(paths: list[str]) -> Callable[[], int]:
    """torchreid's frame pipeline: full decode, convert to RGB, Resize((128, 64)) and ToTensor."""
    resize = v2.Compose([v2.ToImage(), v2.Resize((HEIGHT, WIDTH)), v2.ToDtype(torch.float32, scale=True)])

    def run() -> int:
        for path in paths:
            with Image.open(path) as img:
                resize(img.convert("RGB"))
        return len(paths)

    return run


def our_decode(paths: list[str]) -> Callable[[], int]:
    def run() -> int:
        for path in paths:
            decode_frame(path, HEIGHT, WIDTH)
        return len(paths)

    return run


def loader_rate(dataset: MarsFrameDataset, batches: int) -> Callable[[], int]:
    """PK batches through the DataModule's DataLoader class in this process (one core)."""
    sampler = PKSampler(dataset.pids, P, K, batches, seed=0)
    loader = WorkerErrorLoader(dataset, batch_sampler=sampler, num_workers=0)

    def run() -> int:
        return sum(len(images) for images, *_ in loader)

    return run


def model_rate(steps: int) -> float:
    """LuNet training images/s at batch P x K on this machine's CPU (all cores)."""
    model, loss = LuNet(embed_dim=128), BatchHardTripletLoss(margin=0.5)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    images, labels = torch.rand(P * K, 3, HEIGHT, WIDTH), torch.arange(P).repeat_interleave(K)

    def step() -> int:
        for _ in range(steps):
            optimizer.zero_grad()
            loss(model(images), labels)[0].backward()
            optimizer.step()
        return steps * P * K

    step()  # warm-up
    return rate(step, repeats=1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, help="a MARS release (default: photo frames in a temp folder)")
    parser.add_argument("--frames", type=int, default=2000, help="frames to decode per timing")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of the photo frames")
    parser.add_argument("--model-steps", type=int, default=1, help="LuNet steps timed on the CPU")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp) / "MARS"
        if args.root is None:
            write_photo_frames(root, max(args.frames // 50, P), frames_per_id=50, quality=args.quality)
        tracklets = train_tracklets(root)
        paths = [p for t in tracklets for p in t.paths][: args.frames]
        sizes = [os.path.getsize(p) for p in paths]
        torch.set_num_threads(1)
        ours, peer = rates(our_decode(paths), peer_decode(paths), repeats=5)
        cache_dir = Path(tmp) / "cache"
        start = time.perf_counter()
        _, _, meta = build_cache(root, cache_dir, HEIGHT, WIDTH, workers=1)
        build = meta["count"] / (time.perf_counter() - start)
        cache = FrameCache.open(root, cache_dir, HEIGHT, WIDTH)
        batches = max(args.frames // (P * K), 4)
        jpeg_loader = rate(loader_rate(MarsFrameDataset(tracklets, HEIGHT, WIDTH), batches // 4 or 1))
        cache_loader = rate(loader_rate(MarsFrameDataset(tracklets, HEIGHT, WIDTH, cache=cache), batches * 8))
        big = round(HEIGHT * 1.125), round(WIDTH * 1.125)
        build_cache(root, cache_dir, *big, workers=1)
        big_cache = FrameCache.open(root, cache_dir, *big)
        crop_flip = RandomCropFlip(HEIGHT, WIDTH, flip=True)
        augmented = MarsFrameDataset(tracklets, *big, crop_flip, cache=big_cache)
        augmented_loader = rate(loader_rate(augmented, batches * 2))
        torch.set_num_threads(cores)
        model = model_rate(args.model_steps)
    gpu_need = GPU_TARGET_STEPS * P * K / GPU_TARGET_SECONDS

    table = Table(
        title=f"MARS input pipeline, {len(paths):,} frames of {np.mean(sizes) / 1e3:.1f} kB "
        f"({'--root' if args.root else f'photo crops, quality {args.quality}'}), {cores} cores"
    )
    for column in ("what", "frames/s per core", "vs peer", "vs CPU model", "vs GPU need"):
        table.add_column(column, justify="left" if column == "what" else "right")
    rows = [
        ("decode, peer (PIL + Resize + ToTensor)", peer, 1.0),
        ("decode, decode_frame (DCT 1/2)", ours, ours / peer),
        ("cache build, 1 worker", build, None),
        ("loader from JPEGs (PK 32x4)", jpeg_loader, jpeg_loader / peer),
        ("loader from the cache (PK 32x4)", cache_loader, cache_loader / peer),
        ("loader from the 144x72 cache, crop + flip", augmented_loader, augmented_loader / peer),
    ]
    for name, value, ratio in rows:
        table.add_row(
            name,
            f"{value:,.0f}",
            f"{ratio:.2f}x" if ratio else "",
            f"{value / model:,.0f}x",
            f"{value / gpu_need:.2f}x",
        )
    table.add_row(f"model: LuNet training, CPU ({cores} cores)", f"{model:,.1f} (all cores)", "", "1x", "")
    table.add_row(f"model: need for {GPU_TARGET_STEPS:,} steps in 15 min", f"{gpu_need:,.0f}", "", "", "1x")
    Console(width=140).print(table)
    print(
        f"A DataLoader with W workers gives about W x the per-core rate: the 3x margin over a GPU at "
        f"{gpu_need:,.0f} frames/s needs {3 * gpu_need / jpeg_loader:.1f} JPEG workers, or "
        f"{3 * gpu_need / cache_loader:.2f} cache workers ({3 * gpu_need / augmented_loader:.2f} with the "
        "paper's crop and flip)."
    )


if __name__ == "__main__":
    main()
