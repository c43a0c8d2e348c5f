"""The prepared frame cache: exactly the decoded frames, rebuilt exactly when frames change, clear errors,
and `dataset.cache=true` giving the same batches as decoding the JPEGs."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reid.data.frame_cache import FrameCache, build_cache, cache_folder
from reid.data.jpeg import decode_frame
from reid.data.mars import MarsFrameDataset, load_mars
from reid.errors import DataError
from reid.tasks.train import train
from reid.training.datamodules.mars import MarsDataModule
from tests.helpers.configs import compose_train
from tests.helpers.mars import write_small_mars

ROOT = Path(__file__).resolve().parents[1]
SIZE = (32, 16)


@pytest.fixture
def mars(tmp_path) -> Path:
    root = tmp_path / "MARS"
    write_small_mars(root)
    return root


def all_paths(root: Path) -> list[str]:
    splits = load_mars(root, protocol="official")
    return [p for t in splits.train + splits.gallery for p in t.paths]


def test_cache_holds_exactly_the_decoded_frames(mars, tmp_path):
    folder, built, meta = build_cache(mars, tmp_path / "cache", *SIZE, workers=2)
    assert built and folder == cache_folder(tmp_path / "cache", *SIZE)
    paths = all_paths(mars)
    assert meta["count"] == len(paths) == len(set(paths)) and meta["bad"] == 0
    cache = FrameCache.open(mars, tmp_path / "cache", *SIZE)
    for path in paths:
        assert np.array_equal(cache.read(path), decode_frame(path, *SIZE).transpose(2, 0, 1)), path
    copy = pickle.loads(pickle.dumps(cache))  # as a spawned DataLoader worker gets it: mapped anew
    assert np.array_equal(copy.read(paths[-1]), cache.read(paths[-1]))
    tracklets = load_mars(mars).query[:3]
    cached, decoded = MarsFrameDataset(tracklets, *SIZE, cache=cache), MarsFrameDataset(tracklets, *SIZE)
    for index in range(len(decoded)):
        assert torch.equal(cached[index][0], decoded[index][0])
        assert cached[index][1:] == decoded[index][1:]


def test_rebuilt_only_when_frames_change(mars, tmp_path):
    cache_dir = tmp_path / "cache"
    folder, built, _ = build_cache(mars, cache_dir, *SIZE)
    stamp = (folder / "frames.u8").stat().st_mtime_ns
    assert build_cache(mars, cache_dir, *SIZE)[1] is False
    assert (folder / "frames.u8").stat().st_mtime_ns == stamp  # untouched

    changed = all_paths(mars)[7]
    Image.new("RGB", (128, 256), (255, 0, 0)).save(changed)
    with pytest.raises(
        DataError, match=rf"{folder} is stale.*prepare_mars.py {mars} --size 32x16 --cache-dir"
    ):
        FrameCache.open(mars, cache_dir, *SIZE)
    assert build_cache(mars, cache_dir, *SIZE)[1] is True
    red = FrameCache.open(mars, cache_dir, *SIZE).read(changed)
    assert (red[0] > 250).all() and (red[1:] < 5).all()
    assert sorted(p.name for p in cache_dir.iterdir()) == ["frames_32x16"]  # no staging or old copies left

    Path(changed).unlink()  # a removed frame makes the cache stale too
    with pytest.raises(DataError, match="stale"):
        FrameCache.open(mars, cache_dir, *SIZE)


def test_unreadable_frame_fails_the_build_or_is_marked(mars, tmp_path):
    broken = all_paths(mars)[3]
    Path(broken).write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=rf"{broken} could not be read.*--skip-bad-frames"):
        build_cache(mars, tmp_path / "cache", *SIZE)
    assert not (tmp_path / "cache" / "frames_32x16").exists()  # a failed build leaves no cache
    assert list((tmp_path / "cache").iterdir()) == []
    _, _, meta = build_cache(mars, tmp_path / "cache", *SIZE, skip_bad_frames=True)
    assert meta["bad"] == 1
    cache = FrameCache.open(mars, tmp_path / "cache", *SIZE)
    tracklet = next(t for t in load_mars(mars).train if broken in t.paths)
    index = tracklet.paths.index(broken)
    with pytest.raises(DataError, match=rf"{broken} could not be read"):
        MarsFrameDataset([tracklet], *SIZE, cache=cache)[index]
    skipping = MarsFrameDataset([tracklet], *SIZE, skip_bad_frames=True, cache=cache)
    assert torch.equal(skipping[index][0], skipping[(index + 1) % len(tracklet.paths)][0])
    assert skipping.bad_paths == {broken}


def test_a_killed_build_is_cleared_by_the_next_one(mars, tmp_path):
    """A staging folder whose builder is gone is removed; one of a running process is not."""
    cache_dir = tmp_path / "cache"
    folder = cache_folder(cache_dir, *SIZE)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    abandoned = folder.with_name(f"{folder.name}.building-{dead.pid}")
    running = folder.with_name(f"{folder.name}.building-{os.getppid()}")
    for staging in (abandoned, running):
        staging.mkdir(parents=True)
        (staging / "frames.u8").write_bytes(b"partial")
    build_cache(mars, cache_dir, *SIZE)
    assert not abandoned.exists() and (running / "frames.u8").read_bytes() == b"partial"
    assert FrameCache.open(mars, cache_dir, *SIZE).frames.shape[0] > 0


def test_prepare_script_builds_then_reports_up_to_date(mars):
    command = [sys.executable, "scripts/prepare_mars.py", str(mars), "--size", "32x16", "--workers", "2"]
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    count = len(all_paths(mars))
    assert first.returncode == 0, first.stderr
    assert f"Built {mars / 'cache' / 'frames_32x16'}: {count:,} frames of 32x16" in first.stdout
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert f"is up to date ({count:,} frames, 0 unreadable); nothing to do." in again.stdout
    bad_size = subprocess.run([*command, "--size", "32by16"], cwd=ROOT, capture_output=True, text=True)
    assert bad_size.returncode == 2 and "expected HEIGHTxWIDTH" in bad_size.stderr


def datamodule(root: Path, **overrides) -> MarsDataModule:
    settings = dict(P=4, K=3, height=32, width=16, num_workers=0, eval_batch_size=16)
    return MarsDataModule(str(root), **{**settings, **overrides})


def test_datamodule_cache_gives_the_same_batches(mars):
    build_cache(mars, mars / "cache", 36, 18)
    build_cache(mars, mars / "cache", *SIZE)
    cached, decoded = (datamodule(mars, cache=c, crop_scale=1.125, flip=True) for c in (True, False))
    for module in (cached, decoded):
        module.setup("fit")
    first = next(iter(cached.train_dataloader()))  # crops and flips seeded by the batch (SeededBatch)
    second = next(iter(decoded.train_dataloader()))
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    for a, b in zip(cached.val_dataloader(), decoded.val_dataloader(), strict=True):
        assert all(torch.equal(x, y) for x, y in zip(next(iter(a)), next(iter(b)), strict=True))


def test_datamodule_without_a_cache_names_the_command_for_every_size(mars):
    module = datamodule(mars, cache=True, crop_scale=1.125)
    with pytest.raises(
        DataError, match=rf"no 36x18 frame cache.*prepare_mars.py {mars} --size 36x18 --size 32x16"
    ):
        module.setup("fit")


def test_training_from_the_cache_matches_training_from_jpegs(mars, tmp_path):
    """`experiment=mars_smoke dataset.cache=true` after prepare_mars.py: the same run exactly."""
    build_cache(mars, mars / "cache", 64, 32)
    results = {}
    for cache in ("true", "false"):
        cfg = compose_train(
            tmp_path / f"cache-{cache}",
            "experiment=mars_smoke",
            f"dataset.root={mars}",
            f"dataset.cache={cache}",
            "dataset.P=4",
            "trainer.max_steps=6",
            "trainer.val_check_interval=6",
            "~callbacks.embedding_histograms",
        )
        train(cfg)
        results[cache] = json.loads((tmp_path / f"cache-{cache}" / "results.json").read_text())
    assert results["true"]["final"] == results["false"]["final"]
    assert results["true"]["final"]["val/mAP"] > 0
