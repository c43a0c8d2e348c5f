"""Faults: a full disk, a write killed mid-way and SIGINT/SIGTERM keep every complete file and say so."""

import errno
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from matplotlib.figure import Figure

from reid.data.frame_cache import build_cache
from reid.errors import FileWriteError, Interrupted
from reid.files import TEMP_FILE, atomic_file, remove_leftovers, write_text
from reid.reporting.sweeps import RESULTS_FILE
from reid.tasks.cli import run_cli
from reid.tasks.train import train
from reid.training.checkpoints import AtomicCheckpointIO
from tests.helpers.mars import write_small_mars

ROOT = Path(__file__).resolve().parents[1]
TINY = ["dataset.P=5", "dataset.K=4", "dataset.batches_per_epoch=4", "dataset.knn_reference_size=200"]
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if TEMP_FILE.fullmatch(p.name))


class FillingFile:
    """A file that takes `room` bytes, then fails as on a full disk."""

    def __init__(self, file, room: int):
        self.file, self.room = file, room

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        if len(data) > self.room:
            self.file.write(data[: self.room])
            self.file.flush()
            raise ENOSPC
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name: str):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.file.close()


class FillingDisk:
    """`os.fdopen` as `reid.files` calls it, on a disk that fills during the next `shots` writes."""

    def __init__(self, shots: int = 1 << 30, room: int = 100):
        self.shots, self.room = shots, room
        self.fdopen = os.fdopen

    def __call__(self, descriptor: int, mode: str):
        file = self.fdopen(descriptor, mode)
        if self.shots <= 0:
            return file
        self.shots -= 1
        return FillingFile(file, self.room)


def save_checkpoint(path: Path) -> None:
    AtomicCheckpointIO().save_checkpoint(
        {"state_dict": {"w": torch.arange(50_000.0)}, "global_step": 9}, path
    )


def save_figure(path: Path) -> None:
    figure = Figure()
    figure.subplots().plot([0, 1], [1, 0])
    with atomic_file(path) as file:
        figure.savefig(file, format="png")


WRITERS = {
    "last.ckpt": save_checkpoint,
    "results.json": lambda path: write_text(path, json.dumps({"status": "completed"}) * 1000),
    "summary.png": save_figure,
}


@pytest.mark.parametrize("name", WRITERS)
def test_a_full_disk_mid_write_keeps_the_previous_file(tmp_path, monkeypatch, name):
    target = tmp_path / "run" / name
    target.parent.mkdir()
    target.write_bytes(b"the previous version")
    (tmp_path / "run" / "best-epoch000.ckpt").write_bytes(b"kept")
    monkeypatch.setattr(os, "fdopen", FillingDisk())
    with pytest.raises(FileWriteError) as error:
        WRITERS[name](target)
    monkeypatch.undo()
    assert target.read_bytes() == b"the previous version"
    assert temp_files(tmp_path) == []
    message = str(error.value)
    assert f"into the folder '{target.parent}': the disk is full" in message
    assert f"The previous '{name}'" in message and "kept unchanged" in message
    assert "best-epoch000.ckpt" in message  # what the folder still holds
    WRITERS[name](target)  # with room again, the same writer replaces the file
    assert target.read_bytes() != b"the previous version" and temp_files(tmp_path) == []


@pytest.mark.parametrize("results_fail_too", [False, True])
def test_results_json_survives_a_checkpoint_write_on_a_full_disk(
    digits_cfg, tmp_path, monkeypatch, capsys, results_fail_too
):
    """The disk fills at the first save of step 8: the first epoch's checkpoints stay as they were, and
    `results.json` says what failed, unless it cannot be written either, which does not hide the error."""
    kept: dict[str, bytes] = {}
    disk = FillingDisk(shots=0)
    save = torch.save

    def save_then_fill(checkpoint, file, *args, **kwargs):
        if checkpoint["global_step"] == 8 and not kept:
            kept.update({p.name: p.read_bytes() for p in (tmp_path / "run" / "checkpoints").iterdir()})
            disk.shots = 2 if results_fail_too else 1  # this checkpoint, then results.json
        save(checkpoint, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_fill)
    monkeypatch.setattr(os, "fdopen", disk)
    with pytest.raises(SystemExit) as exit:
        run_cli(train, digits_cfg("run", *TINY))
    assert exit.value.code == 1
    checkpoints = tmp_path / "run" / "checkpoints"
    assert {p.name: p.read_bytes() for p in checkpoints.iterdir()} == kept and "last.ckpt" in kept
    assert temp_files(tmp_path) == []
    stderr = capsys.readouterr().err
    assert re.search(
        rf"Error: Could not write '(best-epoch001|last)\.ckpt' into the folder '{checkpoints}'", stderr
    )
    assert "the disk is full" in stderr and "the folder holds best-epoch000.ckpt, last.ckpt" in stderr
    assert "Traceback" not in stderr
    if results_fail_too:
        assert not (tmp_path / "run" / RESULTS_FILE).exists()
        assert "Could not write 'results.json'" in stderr
    else:
        results = json.loads((tmp_path / "run" / RESULTS_FILE).read_text())
        assert results["status"] == "failed" and "the disk is full" in results["error"]


@pytest.fixture
def tmpfs(tmp_path):
    """`tmpfs(name, size)`: a small real filesystem (a tmpfs, mounted as root) at `tmp_path / name`."""
    mounted = []

    def mount(name: str, size: str) -> Path:
        mount_point = tmp_path / name
        mount_point.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
            capture_output=True,
            text=True,
        )
        if result.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'mount failed'})")
        mounted.append(mount_point)
        return mount_point

    yield mount
    for mount_point in mounted:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_training_on_a_real_full_disk(tmpfs, digits_cfg, capsys):
    """24 MiB: room for two 10 MB checkpoints of the quickstart's convnet, not for a third."""
    small_disk = tmpfs("disk", "24m")
    run_dir = small_disk / "run"
    with pytest.raises(SystemExit) as exit:
        run_cli(train, digits_cfg("run", f"paths.output_dir={run_dir}", *TINY, "trainer.max_epochs=5"))
    assert exit.value.code == 1
    stderr = capsys.readouterr().err
    checkpoints = run_dir / "checkpoints"
    assert f"into the folder '{checkpoints}': the disk is full (No space left on device)" in stderr
    assert "no partial file was left; the folder holds best-epoch000.ckpt, last.ckpt" in stderr
    assert "Traceback" not in stderr
    assert temp_files(small_disk) == []
    for path in checkpoints.glob("*.ckpt"):  # every checkpoint under a final name is complete
        assert torch.load(path, map_location="cpu", weights_only=True)["global_step"] > 0
    results = json.loads((run_dir / RESULTS_FILE).read_text())
    assert results["status"] == "failed" and "the disk is full" in results["error"]


def test_a_full_tmpdir_does_not_stop_training(tmpfs, digits_cfg, tmp_path, monkeypatch):
    """Lightning's own checkpoint writer staged every checkpoint in $TMPDIR."""
    full = tmpfs("tmp", "64k")
    with suppress(OSError), (full / "filler").open("wb") as filler:
        while True:
            filler.write(bytes(4096))
            filler.flush()
    monkeypatch.setenv("TMPDIR", str(full))
    monkeypatch.setattr(tempfile, "tempdir", str(full))
    train(digits_cfg("run", *TINY, "trainer.max_epochs=1"))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 4


def test_a_frame_cache_that_does_not_fit_is_not_started(tmp_path, monkeypatch):
    root = tmp_path / "mars"
    write_small_mars(root)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=1000))
    with pytest.raises(FileWriteError, match=r"needs 0\.\d GB but the disk of .* has 0\.0 GB free"):
        build_cache(root, tmp_path / "cache", 64, 32)
    assert list((tmp_path / "cache").iterdir()) == []


def writing(folder: Path) -> bool:
    """Whether a temporary file in `folder` has data in it: a write is under way."""
    for path in folder.glob(".last.ckpt.*.tmp"):
        with suppress(FileNotFoundError):
            if path.stat().st_size:
                return True
    return False


@pytest.mark.slow
def test_a_write_killed_mid_way_leaves_the_previous_checkpoint_and_the_next_run_clears_it(
    digits_cfg, tmp_path, capsys
):
    """A process rewriting last.ckpt (padded to 64 MB, so a write takes a while) is SIGKILLed mid-write."""
    train(digits_cfg("first", *TINY, "trainer.max_epochs=1"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, torch\n"
            "from reid.training.checkpoints import AtomicCheckpointIO\n"
            "checkpoint = torch.load(sys.argv[1], weights_only=True) | {'padding': torch.zeros(16_000_000)}\n"
            "while True:\n"
            "    AtomicCheckpointIO().save_checkpoint(checkpoint, sys.argv[1])\n",
            str(last),
        ],
        cwd=ROOT,
    )
    deadline = time.monotonic() + 60
    while not writing(last.parent):
        assert time.monotonic() < deadline and writer.poll() is None, "the writer never started a write"
        time.sleep(0.001)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    leftovers = temp_files(last.parent)
    assert len(leftovers) == 1, leftovers
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 4

    train(digits_cfg("resumed", *TINY, f"ckpt_path={last}"))  # the next run's start clears the leftover
    assert f"Removed '{last.parent / leftovers[0]}', the partial file of a write that was killed" in (
        capsys.readouterr().out
    )
    assert temp_files(last.parent) == []
    assert sorted(p.name for p in last.parent.iterdir()) == ["best-epoch000.ckpt", "last.ckpt"]
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == 8


def test_leftovers_are_removed_only_when_their_writer_is_gone(tmp_path):
    names = [
        ".last.ckpt.0123abcd.tmp",
        "last.ckpt",
        ".last.ckpt.tmp",
        "notes.0123abcd.tmp",
        ".x.0123ABCD.tmp",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    with atomic_file(tmp_path / "best.ckpt") as file:  # a write in progress holds its file's lock
        file.write(b"partial")
        assert remove_leftovers(tmp_path) == [tmp_path / names[0]]
        assert len(temp_files(tmp_path)) == 1  # the write in progress
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["best.ckpt", *names[1:]])


def train_until_first_checkpoint(run_dir: Path, log: Path, *args: str) -> subprocess.Popen:
    """A real `python train.py experiment=quickstart` subprocess (its output in `log`), once its first
    checkpoint exists."""
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        *args,
        "experiment=quickstart",
        "trainer.accelerator=cpu",
    ]
    command += [
        *TINY,
        "trainer.max_epochs=1000",
        "~callbacks.rich_progress_bar",
        "+trainer.enable_progress_bar=false",
    ]
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoints" / "last.ckpt").exists():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.05)
    return process


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM-sweep", "SIGINT"])
@pytest.mark.slow
def test_a_signal_saves_the_current_step_and_exits_non_zero(tmp_path, signum):
    """SIGTERM hits a `-m` sweep's job (as a scheduler's would), SIGINT a single run."""
    sweep = signum == signal.SIGTERM
    run_dir = tmp_path / "sweep" / "seed=0" if sweep else tmp_path / "run"
    where = (
        ["-m", "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}"] if sweep else [f"hydra.run.dir={run_dir}"]
    )
    process = train_until_first_checkpoint(run_dir, tmp_path / "output.txt", *where)
    process.send_signal(signum)
    process.wait(timeout=120)
    stderr = (tmp_path / "output.txt").read_text()
    assert process.returncode == 128 + signum, stderr[-3000:]
    results = json.loads((run_dir / RESULTS_FILE).read_text())
    last = run_dir / "checkpoints" / "last.ckpt"
    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert results["status"] == "interrupted" and results["steps"] == step >= 4
    name = signal.Signals(signum).name
    assert f"Error: {name} received: training stopped at step {step} " in stderr
    assert f"saved in '{last}'" in stderr and "Traceback" not in stderr
    assert temp_files(tmp_path) == []
    if sweep:
        rows = (tmp_path / "sweep" / "summary.csv").read_text().splitlines()
        assert any(row.startswith("seed=0,interrupted,") for row in rows), rows
    else:
        assert_suggested_command_resumes(re.search(r"Resume it with `(.+?)`\.", stderr)[1], step, tmp_path)


def assert_suggested_command_resumes(command: str, step: int, folder: Path) -> None:
    """The command the message suggests, typed as printed (in `folder`), resumes past `step`."""
    log = folder / "resumed.txt"
    with log.open("w") as output:
        resumed = subprocess.Popen(shlex.split(command), cwd=folder, stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not (saved := list((folder / "outputs").glob("*/*/checkpoints/last.ckpt"))):
        assert resumed.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)
    resumed.send_signal(signal.SIGINT)
    resumed.wait(timeout=120)
    assert resumed.returncode == 130, log.read_text()[-3000:]
    assert torch.load(saved[0], map_location="cpu", weights_only=True)["global_step"] > step


def test_interrupted_is_a_one_paragraph_error_with_the_signal_status():
    assert Interrupted("stopped", signal.SIGTERM).exit_status == 143
    assert Interrupted("stopped", signal.SIGINT).exit_status == 130
    assert FileWriteError("full").exit_status == 1
