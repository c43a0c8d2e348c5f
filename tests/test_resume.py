"""Faults: a run killed mid-epoch resumes exactly."""

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
import torch

from reid.data.augment import RandomCropFlip
from reid.data.mars import MarsFrameDataset, load_mars
from reid.data.samplers import SeededBatch
from reid.tasks.train import train
from reid.training.random_states import RANDOM_STATES, capture_random_states, restore_random_states
from tests.helpers.mars import write_small_mars
from tests.helpers.pause_at_step import StoppedAtStep

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["~callbacks.rich_progress_bar", "+trainer.enable_progress_bar=false"]
RESTART_WARNING = "resuming from a checkpoint that ended before the epoch ended"


def train_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "trainer.accelerator=cpu", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


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
