"""Tiny `train.py -m` sweeps run as a user runs them, and readers of what they write."""

import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "experiment=quickstart",
    "trainer.accelerator=cpu",
    "~callbacks.rich_progress_bar",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
    "trainer.max_epochs=2",
    "dataset.P=5",
    "dataset.K=4",
    "dataset.batches_per_epoch=4",
    "dataset.knn_reference_size=200",
]


def train_command(*args: str) -> list[str]:
    """`python train.py experiment=quickstart <tiny sizes> ...`; pass `-m` first for a sweep."""
    return [sys.executable, str(ROOT / "train.py"), *args[:1], *TINY, *args[1:]]


def multirun(sweep_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """`python train.py -m experiment=quickstart ...` on tiny sizes into `sweep_dir`."""
    command = train_command("-m", *args, f"hydra.sweep.dir={sweep_dir}")
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as file:
        return list(csv.DictReader(file))


def read_results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())
