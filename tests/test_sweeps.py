"""Sweeps: results.json of each run, the sweep summary (also of an interrupted sweep), TensorBoard HParams,
and the joblib launcher running jobs in parallel."""

import importlib.util
import json
import shutil
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import matplotlib.image
import pytest
import pytorch_lightning as pl
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import plugin_data_pb2

from reid.errors import Interrupted
from reid.reporting.sweeps import SUMMARY_FILES
from reid.tasks.train import train
from tests.helpers.sweeps import ROOT, multirun, read_csv, read_results

FINAL_KEYS = ["val/mAP", "val/precision_at_1", "val/knn_accuracy", "train/loss"]
FINAL_KEYS += ["val/roc_auc", "val/tar_at_far_1e-2", "val/tar_at_far_1e-3", "val/threshold"]  # verification
RUNS = [f"embed_dim={d},margin={m}" for d in (2, 8) for m in (0.2, 0.5)]  # `sweep`'s folders: swept values


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """The issue's sweep (margin=0.2,0.5 x embed_dim=2,8) on tiny sizes, run once for several tests."""
    sweep_dir = tmp_path_factory.mktemp("sweep")
    result = multirun(sweep_dir, "margin=0.2,0.5", "embed_dim=2,8", "~callbacks.embedding_figures")
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep_dir


def test_sweep_writes_results_and_a_summary_that_matches_them(sweep):
    assert sorted(p.parent.name for p in sweep.glob("*/results.json")) == RUNS
    assert all((sweep / name).stat().st_size > 0 for name in SUMMARY_FILES)

    rows = read_csv(sweep / "summary.csv")
    assert [row["status"] for row in rows] == ["completed"] * 4
    assert {(float(r["margin"]), int(r["embed_dim"])) for r in rows} == {
        (0.2, 2),
        (0.2, 8),
        (0.5, 2),
        (0.5, 8),
    }
    best = [float(row["best val/mAP"]) for row in rows]
    assert best == sorted(best, reverse=True)
    for row in rows:
        results = read_results(sweep / row["run"])
        assert results["status"] == "completed"
        assert float(row["margin"]) == results["overrides"]["margin"]
        assert int(row["embed_dim"]) == results["overrides"]["embed_dim"]
        assert float(row["best val/mAP"]) == results["best"]["val/mAP"]
        assert int(row["best epoch"]) == results["best"]["epoch"]
        assert int(row["best step"]) == results["best"]["step"]
        assert {key: float(row[f"final {key}"]) for key in FINAL_KEYS} == results["final"]
        assert float(row["wall_time_s"]) == results["wall_time_s"]

    table = [line for line in (sweep / "summary.md").read_text().splitlines() if line.startswith("| ")]
    assert table[0].startswith("| run | status | margin | embed_dim | best val/mAP | best epoch |")
    assert [line.split("|")[1].strip() for line in table[1:]] == [row["run"] for row in rows]
    height, width, _ = matplotlib.image.imread(sweep / "summary.png").shape
    assert width > 1.5 * height  # one panel per swept key, side by side


def test_sweep_runs_overlay_in_tensorboard_with_hparams(sweep):
    """The sweep folder is the log root: one TensorBoard run per job, with its swept values as
    hyper-parameters and its final metrics as `hp/...`."""
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(sweep))
    multiplexer.Reload()
    assert sorted(multiplexer.Runs()) == [f"{name}/tensorboard" for name in RUNS]
    hparams = multiplexer.PluginRunToTagToContent("hparams")
    for name in RUNS:
        results = read_results(sweep / name)
        content = hparams[f"{name}/tensorboard"]["_hparams_/session_start_info"]
        values = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
        assert values["margin"].number_value == pytest.approx(results["overrides"]["margin"])
        assert values["embed_dim"].number_value == results["overrides"]["embed_dim"]
        run = multiplexer.GetAccumulator(f"{name}/tensorboard")
        assert run.Scalars("hp/mAP")[-1].value == pytest.approx(results["final"]["val/mAP"])
        assert run.Scalars("hp/best_mAP")[-1].value == pytest.approx(results["best"]["val/mAP"])


def test_interrupted_sweep_still_summarizes(sweep, tmp_path):
    """Run 1 lost its results, run 2 was interrupted, run 3 never started: all are listed."""
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("checkpoints", "tensorboard", "embeddings"))
    for name in SUMMARY_FILES:
        (copy / name).unlink()
    (copy / RUNS[1] / "results.json").unlink()
    interrupted = read_results(copy / RUNS[2]) | {"status": "interrupted"}
    (copy / RUNS[2] / "results.json").write_text(json.dumps(interrupted))
    never_started = read_results(copy / RUNS[3])["overrides"]
    shutil.rmtree(copy / RUNS[3])

    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "summarize.py"), str(copy)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 of 4 runs completed" in result.stdout
    rows = read_csv(copy / "summary.csv")
    assert [(row["run"], row["status"]) for row in rows] == [
        (RUNS[0], "completed"),
        (RUNS[1], "missing"),
        (RUNS[2], "interrupted"),
        ("", "not started"),
    ]
    assert float(rows[0]["best val/mAP"]) == read_results(copy / RUNS[0])["best"]["val/mAP"]
    assert all(row["best val/mAP"] == "" and row["final val/mAP"] == "" for row in rows[1:])
    assert (float(rows[3]["margin"]), int(rows[3]["embed_dim"])) == (
        never_started["margin"],
        never_started["embed_dim"],
    )
    assert all((copy / name).is_file() for name in SUMMARY_FILES)


def test_summarize_refuses_a_folder_without_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "summarize.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "holds no runs" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("run", RUNS)
def test_results_json_agrees_with_tensorboard_and_checkpoints(sweep, run):
    run_dir = sweep / run
    results = read_results(run_dir)
    assert set(results) == {
        "status", "monitor", "mode", "best", "final", "epochs", "steps", "overrides",
        "started_at", "finished_at", "wall_time_s", "pid",
    }  # fmt: skip
    assert (results["status"], results["monitor"], results["mode"]) == ("completed", "val/mAP", "max")
    assert (results["epochs"], results["steps"]) == (2, 8)
    assert {"experiment": "quickstart", "trainer.max_epochs": 2}.items() <= results["overrides"].items()
    assert 0 < results["wall_time_s"] < 600

    tensorboard = EventAccumulator(str(run_dir / "tensorboard"))
    tensorboard.Reload()
    for key in ("val/mAP", "val/precision_at_1", "val/knn_accuracy"):
        values = [event.value for event in tensorboard.Scalars(key)]
        assert results["final"][key] == pytest.approx(values[-1])
    mAP = [event.value for event in tensorboard.Scalars("val/mAP")]
    assert results["best"]["val/mAP"] == pytest.approx(max(mAP))
    assert results["best"]["epoch"] == mAP.index(max(mAP))  # the first best, as the checkpoint keeps it
    assert results["best"]["step"] == 4 * (results["best"]["epoch"] + 1)

    assert (run_dir / "checkpoints" / f"best-epoch{results['best']['epoch']:03d}.ckpt").is_file()
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    scores = [s["best_model_score"] for k, s in last["callbacks"].items() if k.startswith("ModelCheckpoint")]
    assert results["best"]["val/mAP"] == pytest.approx(float(next(s for s in scores if s is not None)))
    assert last["callbacks"]["ResultsWriter"]["best"] == results["best"]  # kept for resuming


class InterruptAt(pl.Callback):
    """Raises KeyboardInterrupt, as Ctrl-C does, after training step `step`."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


def test_interrupted_run_writes_its_results_with_status(digits_cfg, tmp_path):
    interrupt = ["+callbacks.interrupt._target_=test_sweeps.InterruptAt", "+callbacks.interrupt.step=3"]
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(Interrupted):  # Ctrl-C: Lightning stops, train() says so (exit status 130)
            train(
                digits_cfg("run", "dataset.batches_per_epoch=2", "dataset.knn_reference_size=200", *interrupt)
            )
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C after the first
    results = read_results(tmp_path / "run")
    assert (results["status"], results["error"]) == ("interrupted", "KeyboardInterrupt: ")
    assert (results["steps"], results["best"]["epoch"], results["best"]["step"]) == (3, 0, 2)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None,
    reason="hydra-joblib-launcher is not installed (pip install -e '.[sweeps]')",
)
def test_joblib_launcher_runs_two_jobs_at_once(tmp_path):
    """Each job waits at a meeting point until the other has started: run one after the other, they fail."""
    result = multirun(
        tmp_path / "sweep",
        "margin=0.2,0.5",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "~callbacks.embedding_figures",
        "~callbacks.embedding_histograms",
        "+callbacks.meeting_point._target_=tests.helpers.meeting_point.MeetingPoint",
        f"+callbacks.meeting_point.folder={tmp_path / 'meeting'}",
        "+callbacks.meeting_point.parties=2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = [read_results(tmp_path / "sweep" / name) for name in ("margin=0.2", "margin=0.5")]
    assert runs[0]["pid"] != runs[1]["pid"]
    assert sorted(p.name for p in (tmp_path / "meeting").iterdir()) == sorted(str(run["pid"]) for run in runs)
    starts = [datetime.fromisoformat(run["started_at"]) for run in runs]
    ends = [datetime.fromisoformat(run["finished_at"]) for run in runs]
    assert max(starts) < min(ends), "the two runs did not overlap in time"
    assert [row["status"] for row in read_csv(tmp_path / "sweep" / "summary.csv")] == ["completed"] * 2
