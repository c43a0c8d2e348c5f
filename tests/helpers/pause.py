"""A test-only callback that holds one sweep job still, once, so that a test can signal it mid-training.

At the start of training epoch `epoch` of the job whose `margin` is `at_margin` (pass `margin=${margin}`),
it creates the file `flag` and waits up to `timeout_s`, until a signal arrives (the training task notes
SIGINT and SIGTERM and acts on them at the end of the step, `reid.training.signals.StopOnSignal`). Once
`flag` exists it never waits again, so the same command run again passes."""

import time
from pathlib import Path

import pytorch_lightning as pl


class PauseOnce(pl.Callback):
    def __init__(self, flag: str, epoch: int, margin: float, at_margin: float, timeout_s: float = 120.0):
        self.flag = Path(flag)
        self.epoch = epoch
        self.pauses = margin == at_margin
        self.timeout_s = timeout_s

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.pauses or trainer.current_epoch != self.epoch or self.flag.exists():
            return
        self.flag.touch()
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline and not signalled(trainer):
            time.sleep(0.05)


def signalled(trainer: pl.Trainer) -> bool:
    """Whether the run received SIGINT or SIGTERM (noted by `StopOnSignal`, or by Lightning itself)."""
    return trainer.received_sigterm or any(getattr(c, "signum", None) for c in trainer.callbacks)
