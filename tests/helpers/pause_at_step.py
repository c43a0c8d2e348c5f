"""Test-only callbacks that end a run at a known step, after that step's checkpoints are written (at the
start of the next batch): `PauseAtStep` touches `marker` and sleeps up to `timeout_s` seconds, so a test
can kill the process there; `StopAtStep` raises `StoppedAtStep`, for runs inside the test process."""

import time
from pathlib import Path

import pytorch_lightning as pl


class StoppedAtStep(RuntimeError):
    """Raised by `StopAtStep`."""


class PauseAtStep(pl.Callback):
    def __init__(self, step: int, marker: str, timeout_s: float = 300.0):
        self.step = step
        self.marker = Path(marker)
        self.timeout_s = timeout_s

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int
    ) -> None:
        if trainer.global_step == self.step:
            self.marker.parent.mkdir(parents=True, exist_ok=True)
            self.marker.touch()
            time.sleep(self.timeout_s)


class StopAtStep(pl.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int
    ) -> None:
        if trainer.global_step == self.step:
            raise StoppedAtStep(f"stopped at step {self.step}")
