"""Faults: a run killed mid-epoch resumes exactly, and the NaN guard saves the state before the bad step,
gives a resume command that works as typed, and warns of a loss that explodes without becoming NaN."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from reid.data.augment import RandomCropFlip
from reid.data.mars import MarsFrameDataset, load_mars
from reid.data.samplers import SeededBatch
from reid.losses import BatchHardTripletLoss
from reid.models.convnet import ConvNet
from reid.tasks.train import train
from reid.training.callbacks import LossExplosionWarning, NonFiniteLossError, NonFiniteLossGuard
from reid.training.datamodules.in_memory import DigitsDataModule
from reid.training.module import EmbeddingModule
from reid.training.random_states import RANDOM_STATES, capture_random_states, restore_random_states
from reid.training.schedules import warmup_cosine
from tests.helpers.cli import train_cli
from tests.helpers.mars import write_small_mars
from tests.helpers.pause_at_step import StoppedAtStep

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["~callbacks.rich_progress_bar", "+trainer.enable_progress_bar=false"]
RESTART_WARNING = "resuming from a checkpoint that ended before the epoch ended"


def checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_weights(a: dict, b: dict) -> None:
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for name, value in a["state_dict"].items():
        assert torch.equal(b["state_dict"][name], value), name


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


@pytest.fixture(scope="module")
def mars(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mars") / "MARS"
    write_small_mars(root, ids_train=16)  # 6 training batches of 8 x 4 frames an epoch
    return root


def test_a_seeded_batch_is_augmented_alike_whatever_was_drawn_before(mars):
    dataset = MarsFrameDataset(load_mars(str(mars)).train, 40, 20, RandomCropFlip(32, 16, flip=True))
    batch = SeededBatch(list(range(0, 40, 5)), seed=11)
    first = torch.stack([item[0] for item in dataset.__getitems__(batch)])
    dataset.__getitems__(SeededBatch(batch, seed=12))  # other draws in between, as another batch's
    again = torch.stack([item[0] for item in dataset.__getitems__(batch)])
    other = torch.stack([item[0] for item in dataset.__getitems__(SeededBatch(batch, seed=12))])
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_random_states_come_back_from_a_checkpoint_file(tmp_path):
    """What `RandomStates` saves survives `torch.load(weights_only=True)` and restores every generator."""
    torch.save({RANDOM_STATES: capture_random_states()}, tmp_path / "states.ckpt")

    def draw() -> tuple:
        return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]

    first = draw()
    restore_random_states(checkpoint(tmp_path / "states.ckpt")[RANDOM_STATES])
    assert draw() == first


@pytest.mark.slow
def test_mars_run_killed_mid_epoch_resumes_to_the_same_metrics_and_weights(mars, tmp_path):
    """SIGKILL at step 10 (epoch 1, 4 of 6 batches done; one loader worker, random crops and flips), then
    resume from its last.ckpt: the end equals the uninterrupted run's, bit for bit."""
    settings = [
        "experiment=mars_smoke",
        f"dataset.root={mars}",
        "dataset.num_workers=1",
        "dataset.flip=true",
        "dataset.crop_scale=1.125",
        "trainer.max_steps=15",
        "trainer.val_check_interval=5",  # validation, and last.ckpt, every 5 steps
        "scheduler.decay_start=10",
    ]
    straight = tmp_path / "straight"
    result = train_cli(*settings, *QUIET, f"hydra.run.dir={straight}")
    assert result.returncode == 0, result.stderr[-3000:]

    killed, marker = tmp_path / "killed", tmp_path / "at_step_10"
    pause = [
        "+callbacks.pause._target_=tests.helpers.pause_at_step.PauseAtStep",
        "+callbacks.pause.step=10",
        f"+callbacks.pause.marker={marker}",
    ]
    command = [sys.executable, "train.py", "trainer.accelerator=cpu", *settings, *QUIET, *pause]
    log = tmp_path / "killed.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [*command, f"hydra.run.dir={killed}"], cwd=ROOT, stdout=output, stderr=output
        )
        deadline = time.monotonic() + 300
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
    assert marker.exists(), log.read_text()[-3000:]
    assert process.returncode == -signal.SIGKILL
    last = checkpoint(killed / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 10 and last["MarsDataModule"] == {"epoch": 1, "batch": 4}

    resumed = tmp_path / "resumed"
    bar = "+callbacks.rich_progress_bar.console_kwargs={force_terminal:true,width:150}"
    result = train_cli(
        *settings, f"ckpt_path={killed / 'checkpoints' / 'last.ckpt'}", bar, f"hydra.run.dir={resumed}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert RESTART_WARNING not in result.stdout + result.stderr
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.stdout)
    counts = {tuple(map(int, m)) for m in re.findall(r"Epoch (\d+) +\S+ (\d+)/(\d+)", shown)}
    assert counts and all(done <= total for _, done, total in counts), sorted(counts)
    resumed_epoch = {done for epoch, done, _ in counts if epoch == 1} - {0}
    assert resumed_epoch and min(resumed_epoch) >= 5, sorted(counts)  # counts on from its 4 done batches

    assert results(resumed)["final"] == results(straight)["final"]
    assert results(resumed)["steps"] == results(straight)["steps"] == 15
    assert_same_weights(
        checkpoint(straight / "checkpoints" / "last.ckpt"), checkpoint(resumed / "checkpoints" / "last.ckpt")
    )


@pytest.mark.slow
def test_epoch_counted_run_stopped_mid_epoch_resumes_exactly(digits_cfg, tmp_path):
    """The quickstart counts epochs and builds its loader early (for the schedule's length): a last.ckpt
    every 2 steps, a stop after step 6 (epoch 1, 2 of 4 batches), a resume: the same end as in one go."""
    every_2 = "callbacks.last_checkpoint.every_n_train_steps=2"
    stop = ["+callbacks.stop._target_=tests.helpers.pause_at_step.StopAtStep", "+callbacks.stop.step=6"]
    train(digits_cfg("straight", every_2))
    with pytest.raises(StoppedAtStep):
        train(digits_cfg("first", every_2, *stop))
    ckpt = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert checkpoint(ckpt)["DigitsDataModule"] == {"epoch": 1, "batch": 2}
    train(digits_cfg("resumed", every_2, f"ckpt_path={ckpt}"))
    straight, resumed = (
        checkpoint(tmp_path / run / "checkpoints" / "last.ckpt") for run in ("straight", "resumed")
    )
    assert resumed["global_step"] == straight["global_step"] == 8
    assert_same_weights(straight, resumed)
    assert results(tmp_path / "resumed")["final"] == results(tmp_path / "straight")["final"]


def test_nan_guard_saves_batch_norm_statistics_of_the_last_good_step(digits_cfg, tmp_path):
    """lr=1e30 blows the weights up after the first update; the second forward pass makes the loss NaN and
    the running statistics inf and NaN, but the saved file holds those after step 1, as last.ckpt does."""
    every_step = "callbacks.last_checkpoint.every_n_train_steps=1"
    with pytest.raises(NonFiniteLossError, match="at step 1 ") as error:
        train(digits_cfg("run", "optimizer.lr=1e30", every_step))
    saved = tmp_path / "run" / "checkpoints" / "last_good_step_000001.ckpt"
    assert f"'{saved}'" in str(error.value)
    assert f"add `ckpt_path={saved} optimizer.lr=1e+29` to this run's overrides" in str(error.value)
    good, after_step_1 = checkpoint(saved), checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert good["global_step"] == after_step_1["global_step"] == 1
    assert_same_weights(after_step_1, good)
    statistics = {k: v for k, v in good["state_dict"].items() if "running_" in k}
    assert len(statistics) == 6 and all(torch.isfinite(v).all() for v in statistics.values())


@pytest.mark.slow
def test_nan_guard_command_resumes_as_typed_at_the_lower_rate(tmp_path):
    """A step that diverges above lr 1e-3 (tests.helpers.diverge): the run stops with a command; typed
    into a shell, it resumes from the saved file at a tenth of the rate, passes the step and completes."""
    run = [
        "experiment=quickstart",
        "trainer.max_epochs=2",
        "dataset.P=5",
        "dataset.K=4",
        "dataset.batches_per_epoch=4",
        "optimizer.lr=0.01",  # warm-up: 0.002 at step 3, 0.0002 at a tenth of it
        "+callbacks.diverge._target_=tests.helpers.diverge.DivergeAboveLr",
        "+callbacks.diverge.step=3",
        "+callbacks.diverge.max_lr=1e-3",
        *QUIET,
    ]
    failed = train_cli(*run, f"hydra.run.dir={tmp_path / 'failed'}")
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    saved = tmp_path / "failed" / "checkpoints" / "last_good_step_000003.ckpt"
    assert "The loss became nan at step 3" in failed.stderr and f"'{saved}'" in failed.stderr
    statistics = [v for k, v in checkpoint(saved)["state_dict"].items() if "running_" in k]
    assert statistics and all(torch.isfinite(v).all() for v in statistics)
    command = re.search(r"`(python [^`]+)`", failed.stderr).group(1)
    assert f"ckpt_path={saved} optimizer.lr=0.001" in command and "optimizer.lr=0.01" not in command

    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # `python` is this venv's
    typed = subprocess.run(
        command,
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PATH": path},
    )
    assert typed.returncode == 0, typed.stderr[-3000:]
    assert "Resuming at optimizer.lr=0.001, not the checkpoint's 0.01" in typed.stdout
    resumed = Path(re.search(r"Run folder: (\S+)", typed.stdout).group(1))
    assert results(resumed)["status"] == "completed" and results(resumed)["steps"] == 8
    last = checkpoint(resumed / "checkpoints" / "last.ckpt")
    group, schedule = last["optimizer_states"][0]["param_groups"][0], last["lr_schedulers"][0]
    assert group["initial_lr"] == 0.001 and schedule["base_lrs"] == [0.001]
    factor = warmup_cosine(torch.optim.SGD([torch.zeros(1)]), 8, warmup_steps=20).lr_lambdas[0]
    assert group["lr"] == pytest.approx(0.001 * factor(schedule["last_epoch"]))


class ExplodingLoss(BatchHardTripletLoss):
    """The batch-hard loss, times 1e7 from the `from_call`-th call on."""

    def __init__(self, from_call: int):
        super().__init__(margin=0.5)
        self.calls, self.from_call = 0, from_call

    def forward(self, embeddings, labels):
        self.calls += 1
        loss, stats = super().forward(embeddings, labels)
        return (loss * 1e7 if self.calls >= self.from_call else loss), stats


def test_exploding_finite_loss_warns_once_with_the_step(tmp_path):
    pl.seed_everything(0)
    module = EmbeddingModule(ConvNet(2), ExplodingLoss(from_call=4), lambda p: torch.optim.SGD(p, lr=0.0))
    trainer = pl.Trainer(
        accelerator="cpu",
        callbacks=[NonFiniteLossGuard(str(tmp_path))],
        max_steps=6,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.warns(LossExplosionWarning, match=r"at step 3, .* times its first value") as caught:
        trainer.fit(module, datamodule=DigitsDataModule(P=5, K=4))
    assert len([w for w in caught if w.category is LossExplosionWarning]) == 1
    assert trainer.global_step == 6  # a warning, not a stop
