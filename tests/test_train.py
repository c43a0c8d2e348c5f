"""End-to-end training: the CLI on tiny data, resume, and each bad input's message."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_idx import idx_bytes

from reid.data.samplers import PKSampler
from reid.errors import ConfigError, DataError
from reid.tasks.train import train
from tests.helpers.cli import train_cli
from tests.helpers.configs import compose_train

ROOT = Path(__file__).resolve().parents[1]
SCALARS = [
    "train/loss",
    "train/active_triplets",
    "train/hardest_pos",
    "train/hardest_neg",
    "train/lr",
    "val/precision_at_1",
    "val/mAP",
    "val/knn_accuracy",
    "val/roc_auc",
    "val/tar_at_far_1e-3",
    "val/threshold",
]


def events(run_dir: Path) -> EventAccumulator:
    files = list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert files, f"no TensorBoard event file in {run_dir}"
    accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    accumulator.Reload()
    return accumulator


def write_fake_mnist(folder: Path, n_train: int = 240, n_test: int = 100) -> Path:
    """The four official file names holding blobs at a class-dependent position (learnable)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, size=(n, 28, 28))
        for i, label in enumerate(labels):
            row, col = divmod(int(label), 5)
            images[i, 4 + 10 * row : 12 + 10 * row, 2 + 5 * col : 7 + 5 * col] = 255
        files = {
            f"{prefix}-images-idx3-ubyte.gz": idx_bytes(0x08, (n, 28, 28), images.ravel().tolist(), "B"),
            f"{prefix}-labels-idx1-ubyte.gz": idx_bytes(0x08, (n,), labels.tolist(), "B"),
        }
        for name, data in files.items():
            (folder / name).write_bytes(gzip.compress(data))
    return folder


@pytest.mark.slow
def test_quickstart_cli_writes_run_folder_and_learns(tmp_path):
    run_dir = tmp_path / "run"
    result = train_cli("experiment=quickstart", "trainer.max_epochs=3", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Run folder: {run_dir}" in result.stdout

    scalars = events(run_dir).Tags()["scalars"]
    assert set(SCALARS) <= set(scalars)
    assert {"train/embedding_values", "train/embedding_norms"} <= set(events(run_dir).Tags()["histograms"])
    assert "val/verification" in events(run_dir).Tags()["images"]
    precision = [e.value for e in events(run_dir).Scalars("val/precision_at_1")]
    assert len(precision) == 3
    # chance is 0.1, the untrained network gives 0.18; 3 epochs gave 0.64-0.76 (the 2-D run is chaotic)
    assert precision[-1] > 0.45, precision
    assert sorted(p.name for p in (run_dir / "embeddings").glob("*.png")) == [
        f"epoch_{e:03d}.png" for e in range(3)
    ]
    checkpoints = {p.name for p in (run_dir / "checkpoints").glob("*.ckpt")}
    assert "last.ckpt" in checkpoints and any(name.startswith("best-epoch") for name in checkpoints)


def test_overrides_on_an_mnist_folder(tmp_path):
    """`train.py margin=0.3 embed_dim=8` on a folder of the four official .gz files (in-process: the
    quickstart test above covers the CLI itself)."""
    mnist = write_fake_mnist(tmp_path / "mnist")
    run_dir = tmp_path / "run"
    cfg = compose_train(
        run_dir,
        "margin=0.3",
        "embed_dim=8",
        f"dataset.root={mnist}",
        "dataset.batches_per_epoch=5",
        "trainer.max_epochs=2",
    )
    assert instantiate(cfg.module).loss.margin == 0.3
    train(cfg)
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["state_dict"]["backbone.head.3.weight"].shape == (8, 256)
    assert state["global_step"] == 10
    assert list((run_dir / "tensorboard").glob("**/projector_config.pbtxt"))  # D > 2: projector


def test_misspelt_key_is_an_error_naming_it(tmp_path):
    result = train_cli("marginn=0.3", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode != 0
    assert "marginn" in result.stderr and "not in struct" in result.stderr


def test_missing_mnist_files_give_one_clear_paragraph(tmp_path):
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    result = train_cli(f"dataset.root={empty}", "dataset.download=false", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert str(empty) in result.stderr and "train-images-idx3-ubyte.gz" in result.stderr
    assert "dataset.root" in result.stderr


def test_offline_download_failure_says_what_to_do(tmp_path, monkeypatch):
    """The real download path, pointed at a closed local port so the test never needs the network."""
    import torchvision

    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    from reid.training.datamodules.in_memory import MNISTDataModule

    with pytest.raises(DataError, match="the download failed") as error:
        MNISTDataModule(root=str(tmp_path / "mnist")).prepare_data()
    assert "t10k-labels-idx1-ubyte.gz" in str(error.value) and "dataset.root" in str(error.value)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def test_resume_continues_exactly(digits_cfg, tmp_path):
    """2 epochs in one go == 1 epoch, then resume for the second: same weights, step and optimizer."""
    train(digits_cfg("straight"))
    train(digits_cfg("first", "trainer.max_epochs=1"))
    train(digits_cfg("resumed", f"ckpt_path={tmp_path / 'first' / 'checkpoints' / 'last.ckpt'}"))
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    assert resumed["global_step"] == straight["global_step"] == 8
    for name, value in straight["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][name], value, msg=name)
    adam_straight = straight["optimizer_states"][0]["state"]
    adam_resumed = resumed["optimizer_states"][0]["state"]
    for index, state in adam_straight.items():
        torch.testing.assert_close(adam_resumed[index]["exp_avg"], state["exp_avg"])
    assert (tmp_path / "first" / "checkpoints" / "last.ckpt").is_file()  # the earlier run is left intact


def test_each_epoch_draws_that_epochs_batches(digits_cfg, tmp_path):
    """Lightning reaches the PK batch sampler's `set_epoch`: epoch e trains on its epoch-e batches."""
    cfg = digits_cfg(
        "run",
        "+callbacks.shard_recorder._target_=tests.helpers.shard_recorder.ShardRecorder",
        f"+callbacks.shard_recorder.folder={tmp_path / 'batches'}",
    )
    train(cfg)
    datamodule = instantiate(cfg.dataset)
    datamodule.setup("fit")
    sampler = PKSampler(datamodule.splits.train_labels, 5, 4, batches_per_epoch=4, seed=cfg.seed)
    drawn = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        drawn.append(json.loads((tmp_path / "batches" / f"rank0_epoch{epoch}.json").read_text())["batches"])
        assert drawn[-1] == list(sampler)
    assert drawn[0] != drawn[1]


def test_resume_from_another_model_is_refused(digits_cfg, tmp_path):
    train(digits_cfg("first", "trainer.max_epochs=1"))
    ckpt = tmp_path / "first" / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match="does not match the configured model") as error:
        train(digits_cfg("other", "embed_dim=8", f"ckpt_path={ckpt}"))
    assert str(ckpt) in str(error.value) and "(8, 256)" in str(error.value)
    with pytest.raises(ConfigError, match="does not exist"):
        train(digits_cfg("missing", f"ckpt_path={tmp_path / 'nope.ckpt'}"))


@pytest.mark.parametrize(("key", "value"), [("P", 1), ("K", 1)])
def test_pk_below_two_is_a_config_error(digits_cfg, key, value):
    with pytest.raises(ConfigError, match=rf"dataset\.{key}={value}.*at least 2"):
        train(digits_cfg("run", f"dataset.{key}={value}"))
