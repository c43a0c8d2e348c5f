"""Ctrl-C (SIGINT) and a scheduler's SIGTERM end a training run cleanly and visibly: the current step is
saved, `results.json` says "interrupted", and the process exits with 130 or 143 (128 + the signal's number).

Lightning turns Ctrl-C into a `KeyboardInterrupt` wherever it lands, and ends a run it stopped on SIGTERM
with exit status 0, so a scheduler would read a killed job as a success.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from reid.errors import Interrupted
from reid.training.command import rerun_command

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal(pl.Callback):
    """While training runs, SIGINT and SIGTERM are noted and acted on at the end of the current training step
    (or validation batch): the state is saved to `<dirpath>/last.ckpt` and `Interrupted` is raised, which
    the other callbacks see in `on_exception` (`ResultsWriter` writes status "interrupted").

    A second Ctrl-C stops at once, without saving. Under DDP every rank stops at the same step when any of
    them received a signal.
    """

    def __init__(self, dirpath: str | Path, filename: str = "last.ckpt"):
        self.path = Path(dirpath) / filename
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set handlers (a notebook runner's worker thread cannot)
        self._previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
        for signum in SIGNALS:
            signal.signal(signum, self._receive)

    def _receive(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = self.signum or signum

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._stop_if_signalled(trainer)

    def on_validation_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if not trainer.sanity_checking:
            self._stop_if_signalled(trainer)

    def _stop_if_signalled(self, trainer: pl.Trainer) -> None:
        if not trainer.strategy.reduce_boolean_decision(self.signum is not None, all=False):
            return
        signum = self.signum or signal.SIGTERM  # a signal that reached another rank only
        self._restore()
        trainer.save_checkpoint(self.path)
        command = rerun_command({"ckpt_path": str(self.path)})
        raise Interrupted(
            f"{signal.Signals(signum).name} received: training stopped at step {trainer.global_step} "
            f"(epoch {trainer.current_epoch}) and that step is saved in '{self.path}'. Resume it with "
            + (f"`{command}`." if command else f"ckpt_path={self.path} and the run's other settings."),
            signum,
        )

    def unsaved(self, trainer: pl.Trainer) -> Interrupted:
        """The error of a run Lightning stopped itself (a second Ctrl-C, or a signal before training began):
        nothing was saved at the current step."""
        signum = self.signum or (signal.SIGTERM if trainer.received_sigterm else signal.SIGINT)
        return Interrupted(
            f"{signal.Signals(signum).name} received: training stopped at step {trainer.global_step} "
            f"(epoch {trainer.current_epoch}) without saving that step; the checkpoints written before are "
            f"kept in '{self.path.parent}'.",
            signum,
        )

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._restore()

    def _restore(self) -> None:
        """Puts back the handlers found at training start (before Lightning restores its own originals)."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
