"""The entry scripts run as a user runs them: a subprocess from the repository root."""

import subprocess
import sys
from pathlib import Path

import pytest

from reid.tasks.cli import run_cli
from reid.tasks.train import train

ROOT = Path(__file__).resolve().parents[2]


def run_script(script: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python <script> <args>` (e.g. "evaluate.py"), its output captured as text."""
    command = [sys.executable, str(ROOT / script), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)


def train_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python train.py trainer.accelerator=cpu <args>`."""
    return run_script("train.py", "trainer.accelerator=cpu", *args, cwd=cwd)


def train_error_paragraph(cfg, capsys) -> str:
    """What `train.py` prints for a config that stops with a user error, run in-process through `run_cli`:
    asserts exit status 1 and a single paragraph on stderr (no traceback), and returns that stderr."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(train, cfg)
    assert exit_info.value.code == 1
    stderr = capsys.readouterr().err
    assert stderr.startswith("\nError: ") and stderr.count("\n") == 2, stderr  # one paragraph
    return stderr
