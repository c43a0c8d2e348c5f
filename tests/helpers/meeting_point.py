"""A test-only callback that proves jobs run at the same time: each job announces itself in a folder at
fit start and waits until `parties` jobs have done so. Sequential jobs never meet and the first one fails
after `timeout_s`; parallel ones pass at once."""

import os
import time
from pathlib import Path

import pytorch_lightning as pl


class MeetingPoint(pl.Callback):
    def __init__(self, folder: str, parties: int, timeout_s: float = 120.0):
        self.folder = Path(folder)
        self.parties = parties
        self.timeout_s = timeout_s

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / str(os.getpid())).touch()
        deadline = time.monotonic() + self.timeout_s
        while len(list(self.folder.iterdir())) < self.parties:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(list(self.folder.iterdir()))} of {self.parties} jobs met")
            time.sleep(0.05)
