"""The entry scripts run as a user runs them: a subprocess from the repository root."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_script(script: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python <script> <args>` (e.g. "evaluate.py"), its output captured as text."""
    command = [sys.executable, str(ROOT / script), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)


def train_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python train.py trainer.accelerator=cpu <args>`."""
    return run_script("train.py", "trainer.accelerator=cpu", *args, cwd=cwd)
