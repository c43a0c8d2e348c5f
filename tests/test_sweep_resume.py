"""Continuing sweeps and runs: a stopped sweep run again into its folder skips its finished jobs, resumes
its interrupted ones and trains only new values, overwriting nothing; a single run refuses a folder that
holds a run unless it resumes that run; job folder names are safe."""

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from reid.tasks.job_folders import MAX_NAME, folder_name
from reid.tasks.run_folder import differences
from tests.helpers.sweeps import ROOT, multirun, read_csv, read_results, train_command


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder`: its bytes and modification time."""
    return {
        path.relative_to(folder).as_posix(): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def pause(flag: Path, epoch: int) -> list[str]:
    """Overrides that hold the margin=0.5 job at the start of `epoch`, once (`tests.helpers.pause`)."""
    return [
        "+callbacks.pause._target_=tests.helpers.pause.PauseOnce",
        f"+callbacks.pause.flag={flag}",
        f"+callbacks.pause.epoch={epoch}",
        "+callbacks.pause.margin=${margin}",
        "+callbacks.pause.at_margin=0.5",
    ]


def stopped_sweep(sweep: Path, signum: int, *args: str) -> subprocess.CompletedProcess:
    """Runs `train.py -m ... args` into `sweep` and sends it `signum` once a `pause` flag (in args) is set."""
    flag = Path(next(a for a in args if a.startswith("+callbacks.pause.flag=")).split("=", 1)[1])
    log = sweep.parent / f"{sweep.name}.log"
    command = train_command("-m", *args, f"hydra.sweep.dir={sweep}")
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 300
        while not flag.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert flag.exists(), f"the job never paused:\n{log.read_text()[-3000:]}"
        process.send_signal(signum)
        process.wait(timeout=300)
    return subprocess.CompletedProcess(command, process.returncode, log.read_text(), "")


def validation_steps(event_file: Path) -> list[int]:
    """The steps at which a TensorBoard event file holds `val/mAP`."""
    accumulator = EventAccumulator(str(event_file))
    accumulator.Reload()
    return [event.step for event in accumulator.Scalars("val/mAP")]


def statuses(sweep: Path) -> list[tuple[str, str]]:
    return [(row["run"], row["status"]) for row in read_csv(sweep / "summary.csv")]


@pytest.mark.slow
def test_a_stopped_sweep_continues_where_it_stopped(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["~callbacks.embedding_histograms", *pause(tmp_path / "paused", epoch=1)]

    stopped = stopped_sweep(sweep, signal.SIGINT, "margin=0.2,0.5", *args)
    assert stopped.returncode == 130, stopped.stdout[-3000:]  # 128 + SIGINT
    assert statuses(sweep) == [("margin=0.2", "completed"), ("margin=0.5", "interrupted")]
    interrupted = read_results(sweep / "margin=0.5")
    assert (interrupted["epochs"], interrupted["steps"]) == (1, 5)  # the step under way when signalled
    first, second = snapshot(sweep / "margin=0.2"), snapshot(sweep / "margin=0.5")

    again = multirun(sweep, "margin=0.2,0.5", *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"Skipped: '{sweep / 'margin=0.2'}' holds this job's completed run" in again.stdout
    last = sweep / "margin=0.5" / "checkpoints" / "last.ckpt"
    assert f"Resuming this job's interrupted run from '{last}'." in again.stdout
    assert snapshot(sweep / "margin=0.2") == first
    resumed = snapshot(sweep / "margin=0.5")
    kept = [".hydra/config.yaml", ".hydra/overrides.yaml", "embeddings/epoch_000.png"]
    kept += [name for name in second if name.startswith("tensorboard/events")]  # the first start's events
    assert all(resumed[name] == second[name] for name in kept)
    assert resumed["train.log"][0].startswith(second["train.log"][0])  # appended to
    [new_events] = [name for name in resumed if name.startswith("tensorboard/events") and name not in kept]
    steps = [validation_steps(sweep / "margin=0.5" / name) for name in (kept[-1], new_events)]
    assert len(steps[0]) == len(steps[1]) == 1 and steps[1] > steps[0]  # epoch 1 only: resumed, not redone
    assert OmegaConf.load(sweep / "margin=0.5" / ".hydra" / "resume-1" / "config.yaml").ckpt_path == str(last)
    results = read_results(sweep / "margin=0.5")
    assert (results["status"], results["epochs"], results["steps"]) == ("completed", 2, 8)
    assert sorted(statuses(sweep)) == [("margin=0.2", "completed"), ("margin=0.5", "completed")]

    done = {name: snapshot(sweep / name) for name in ("margin=0.2", "margin=0.5")}
    extended = multirun(sweep, "margin=0.2,0.5,1.0", *args)
    assert extended.returncode == 0, extended.stderr[-3000:]
    assert extended.stdout.count("Skipped: ") == 2 and "Resuming" not in extended.stdout
    assert {name: snapshot(sweep / name) for name in done} == done
    assert read_results(sweep / "margin=1.0")["status"] == "completed"
    assert sorted(statuses(sweep)) == [(f"margin={m}", "completed") for m in ("0.2", "0.5", "1.0")]
    earlier = OmegaConf.load(sweep / "multirun.1.yaml").hydra.overrides.task
    assert "margin=0.2,0.5" in earlier and "margin=0.2,0.5,1.0" in (sweep / "multirun.yaml").read_text()


@pytest.mark.slow
def test_sigterm_refreshes_the_summary_and_a_job_without_checkpoint_is_left_alone(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["trainer.max_epochs=1", "~callbacks.embedding_histograms", *pause(tmp_path / "paused", epoch=0)]

    assert stopped_sweep(sweep, signal.SIGTERM, "margin=0.2,0.5", *args).returncode == 143  # 128 + SIGTERM
    assert statuses(sweep) == [("margin=0.2", "completed"), ("margin=0.5", "interrupted")]
    assert read_results(sweep / "margin=0.5")["error"].startswith("Interrupted: SIGTERM received")
    # As if the job had been killed before it saved anything: a stopped run with nothing to resume from.
    shutil.rmtree(sweep / "margin=0.5" / "checkpoints")
    stopped = snapshot(sweep / "margin=0.5")

    again = multirun(sweep, "margin=0.2,0.5", *args)
    assert again.returncode == 1
    assert "Skipped: " in again.stdout and "Traceback" not in again.stderr
    assert f"'{sweep / 'margin=0.5'}' holds this job's interrupted run, but no checkpoints/last.ckpt" in (
        " ".join(again.stderr.split())
    )
    assert snapshot(sweep / "margin=0.5") == stopped


@pytest.mark.slow
def test_a_run_refuses_a_folder_holding_a_run_unless_it_resumes_it(tmp_path):
    run_dir = tmp_path / "run"
    first = subprocess.run(
        train_command("trainer.max_epochs=1", f"hydra.run.dir={run_dir}"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    before = snapshot(run_dir)

    refused = subprocess.run(
        train_command("trainer.max_epochs=1", f"hydra.run.dir={run_dir}"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    last = run_dir / "checkpoints" / "last.ckpt"
    message = " ".join(refused.stderr.split())
    assert f"'{run_dir}' already holds a run (results.json, checkpoints, tensorboard" in message
    assert f"continue that run with ckpt_path={last}." in message
    assert snapshot(run_dir) == before

    resumed = subprocess.run(
        train_command("trainer.max_epochs=2", f"ckpt_path={last}", f"hydra.run.dir={run_dir}"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = read_results(run_dir)
    assert (results["status"], results["epochs"], results["steps"]) == ("completed", 2, 8)
    assert snapshot(run_dir)[".hydra/config.yaml"] == before[".hydra/config.yaml"]
    assert OmegaConf.load(run_dir / ".hydra" / "resume-1" / "config.yaml").ckpt_path == str(last)


@pytest.mark.slow
def test_optuna_trials_get_their_own_folders_and_a_longer_search_reuses_them(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "sweep"
    search = ["hparams_search=margin_lr", "~callbacks.embedding_histograms", "~callbacks.embedding_figures"]
    result = multirun(sweep, *search, "hydra.sweeper.n_trials=2")
    assert result.returncode == 0, result.stderr[-3000:]
    trials = sorted(path.parent.name for path in sweep.glob("*/results.json"))
    assert len(trials) == 2 and all(re.fullmatch(r"margin=[\d.e-]+,optimizer.lr=[\d.e-]+", t) for t in trials)
    before = {name: snapshot(sweep / name) for name in trials}

    longer = multirun(sweep, *search, "hydra.sweeper.n_trials=3")
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert longer.stdout.count("Skipped: ") == 2  # the seeded sampler proposes the same first trials
    assert {name: snapshot(sweep / name) for name in trials} == before
    assert len(list(sweep.glob("*/results.json"))) == 3
    assert [row["status"] for row in read_csv(sweep / "summary.csv")] == ["completed"] * 3
    assert {path.name for path in sweep.glob("optimization_results*")} == {
        "optimization_results.yaml",
        "optimization_results.1.yaml",  # the shorter search's, kept
    }


def test_job_folder_names_are_single_safe_folders():
    assert folder_name(["margin=0.2", "embed_dim=8", "seed=1"], {"margin", "embed_dim"}) == (
        "embed_dim=8,margin=0.2"
    )
    assert folder_name(["dataset.root=/data/a%b", "margin=0.2"], {"dataset.root"}) == (
        "dataset.root=%2Fdata%2Fa%25b"
    )
    assert folder_name(["+trainer.x=1", "~callbacks.y"], set()) == "~callbacks.y,+trainer.x=1"  # by key
    assert folder_name([], set()) == "defaults"
    long = [f"key{i}=/some/long/path/{i}" for i in range(20)]
    names = {folder_name(long, set()), folder_name([*long[:-1], "key19=other"], set())}
    assert len(names) == 2 and all(len(name.encode()) <= MAX_NAME and "/" not in name for name in names)


def test_differences_name_each_override_that_differs():
    there = {"margin": 0.2, "trainer.max_epochs": 2, "seed": 0}
    here = {"margin": 0.2, "trainer.max_epochs": 5, "embed_dim": 8}
    assert differences(there, here) == (
        "trainer.max_epochs: 2 there, 5 here; seed: 0 there, - here; embed_dim: - there, 8 here"
    )
