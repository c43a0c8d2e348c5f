"""MARS training data: the datamodule's loaders, PK batches, validation frames per protocol, clear errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from reid.data.mars import MarsFrameDataset, load_mars
from reid.errors import ConfigError, DataError
from reid.retrieval.evaluators import protocol_evaluator
from reid.tasks.train import train
from reid.training.datamodules.mars import MarsDataModule
from tests.helpers.cli import train_error_paragraph
from tests.helpers.configs import compose_train
from tests.helpers.mars import write_small_mars

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """One small synthetic MARS tree per module (4 train identities), read only."""
    root = tmp_path_factory.mktemp("mars") / "MARS"
    write_small_mars(root)
    return root


def datamodule(root: Path, **overrides) -> MarsDataModule:
    """A set-up datamodule with small frames and no worker processes (unless overridden)."""
    settings = dict(P=4, K=3, height=32, width=16, num_workers=0, eval_batch_size=16)
    module = MarsDataModule(str(root), **{**settings, **overrides})
    module.setup("fit")
    return module


def ranked_splits(module: MarsDataModule) -> tuple[list, list]:
    """The query and gallery tracklets, in the order of the validation and test loaders."""
    return module.splits.query, module.splits.gallery


def test_batches_are_images_pids_camids_tracklet_ids(root):
    module = datamodule(root)
    batch = next(iter(module.train_dataloader()))
    assert batch[0].shape == (12, 3, 32, 16) and batch[0].dtype == torch.uint8  # copied to the device as is
    images, pids, camids, tracklet_ids = module.on_after_batch_transfer(batch, 0)
    assert images.dtype == torch.float32 and torch.equal(images * 255, batch[0].float())
    tracklets = [module.splits.train[t] for t in tracklet_ids.tolist()]
    assert pids.tolist() == [t.pid for t in tracklets] and camids.tolist() == [t.camid for t in tracklets]
    query, gallery = module.val_dataloader()
    for loader in (query, gallery):
        images, pids, camids, tracklet_ids = next(iter(loader))
        assert images.shape[1:] == (3, 32, 16) and len(images) == len(pids) == len(camids) == len(
            tracklet_ids
        )


@pytest.mark.parametrize("K", [2, 8])  # 8 exceeds some identities' frame counts: drawn with replacement
def test_training_batches_are_P_identities_x_K_frames(root, K):
    module = datamodule(root, P=3, K=K)
    loader = module.train_dataloader()
    frames, batches = loader.dataset, list(loader.batch_sampler)
    assert len(batches) == len(frames) // (3 * K)
    tracklets_of_pid: dict[int, set[int]] = {}
    for batch in batches:
        pids, counts = torch.unique(torch.from_numpy(frames.pids[batch]), return_counts=True)
        assert len(pids) == 3 and counts.tolist() == [K] * 3
        for index in batch:
            tracklets_of_pid.setdefault(int(frames.pids[index]), set()).add(int(frames.tracklet_ids[index]))
    # Frames of an identity are drawn across its tracklets (each synthetic train identity has several).
    assert max(len(t) for t in tracklets_of_pid.values()) > 1


@pytest.mark.parametrize("n", [1, 2, None])
def test_validation_takes_n_evenly_spaced_frames_per_tracklet(root, n):
    module = datamodule(root, val_frames_per_tracklet=n)
    for loader, tracklets in zip(module.val_dataloader(), ranked_splits(module), strict=True):
        frames = loader.dataset
        per_tracklet = np.bincount(frames.tracklet_ids, minlength=len(tracklets))
        expected = [len(t.paths) if n is None else min(len(t.paths), n) for t in tracklets]
        assert per_tracklet.tolist() == expected
        assert frames.paths[0] == tracklets[0].paths[0]  # the first frame is always kept
    for loader, tracklets in zip(module.test_dataloader(), ranked_splits(module), strict=True):
        assert len(loader.dataset) == sum(len(t.paths) for t in tracklets)  # testing takes every frame


@pytest.mark.parametrize("protocol", ["official", "torchreid"])
def test_query_and_gallery_tracklets_follow_the_protocol(root, protocol):
    splits = load_mars(root, protocol)
    query, gallery = datamodule(root, protocol=protocol).val_dataloader()
    for loader, tracklets in ((query, splits.query), (gallery, splits.gallery)):
        frames = loader.dataset
        assert len(np.unique(frames.tracklet_ids)) == len(tracklets)
        assert frames.pids[np.searchsorted(frames.tracklet_ids, np.arange(len(tracklets)))].tolist() == [
            t.pid for t in tracklets
        ]
    assert (-1 in {t.pid for t in splits.gallery}) == (protocol == "official")


def test_flip_and_crop(root):
    flipped = datamodule(root, flip=True).train_dataloader().dataset
    plain = MarsFrameDataset(flipped.tracklets, 32, 16)
    for index in range(6):
        image, original = flipped[index][0], plain[index][0]
        assert torch.equal(image, original) or torch.equal(image, original.flip(-1))
    cropped = datamodule(root, crop_scale=1.125).train_dataloader()
    assert (cropped.dataset.height, cropped.dataset.width) == (36, 18)  # decoded 1.125x larger ...
    assert next(iter(cropped))[0].shape[2:] == (32, 16)  # ... and cropped back


def test_unreadable_frame_in_a_worker_is_one_paragraph(root, tmp_path):
    broken = tmp_path / "MARS"
    subprocess.run(["cp", "-r", str(root), str(broken)], check=True)
    module = datamodule(broken, num_workers=1, val_frames_per_tracklet=None)
    bad = Path(module.splits.query[-1].paths[-1])
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DataError) as error:
        for _ in module.val_dataloader()[0]:
            pass
    message = str(error.value)
    assert str(bad) in message and "skip_bad_frames" in message
    assert "Traceback" not in message and "worker" not in message


@pytest.mark.parametrize(
    ("settings", "key"),
    [({"crop_scale": 0.9}, "crop_scale"), ({"val_frames_per_tracklet": 0}, "val_frames_per_tracklet")],
)
def test_bad_settings_are_config_errors(root, settings, key):
    with pytest.raises(ConfigError, match=key):
        MarsDataModule(str(root), **settings)


def test_unknown_protocol_is_a_config_error(root):
    with pytest.raises(ConfigError, match="protocol"):
        datamodule(root, protocol="market")
    with pytest.raises(ConfigError, match="dataset.protocol"):
        protocol_evaluator("market")


@pytest.mark.slow
def test_lunet_on_mars_trains_and_validates(tmp_path):
    """`train.py dataset=mars model=lunet embed_dim=128` in-process: one tiny step, one validation.

    LuNet embeds a few frames a second on a CPU, so the tree holds only a dozen test tracklets.
    """
    tiny = tmp_path / "MARS"
    write_small_mars(tiny, ids_train=2, ids_test=3, distractors=1, junk=1, max_frames=3)
    cfg = compose_train(
        tmp_path / "run",
        "dataset=mars",
        f"dataset.root={tiny}",
        "model=lunet",
        "embed_dim=128",
        "dataset.P=2",
        "dataset.K=2",
        "dataset.batches_per_epoch=1",
        "dataset.val_frames_per_tracklet=1",
        "dataset.num_workers=0",
        "trainer.max_epochs=1",
    )
    metrics = train(cfg)
    assert {f"val/{k}" for k in ("mAP", "rank1", "rank5", "rank10", "rank20")} <= set(metrics)
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_missing_mars_root_is_one_paragraph_and_exit_status_1(tmp_path, capsys):
    """What `python train.py experiment=mars_smoke dataset.root=<missing>` prints (the CLI's own process
    boundary is covered by test_train.py's missing-MNIST test)."""
    missing = tmp_path / "no-mars-here"
    cfg = compose_train(tmp_path / "run", "experiment=mars_smoke", f"dataset.root={missing}")
    stderr = train_error_paragraph(cfg, capsys)
    assert str(missing) in stderr and "bbox_train" in stderr
