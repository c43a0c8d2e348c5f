"""The Hydra callback that keeps a sweep folder's summary files (`reid.reporting.sweeps`) up to date."""

import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from reid.errors import ReidError
from reid.reporting.sweeps import write_summary


class SweepSummary(Callback):
    """Hydra callback: writes the sweep summary when a multirun ends, and refreshes it after every job, so a
    sweep that stops early (Hydra ends a sweep with an error when one of its jobs failed) still has one."""

    def on_job_end(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            write_summary(Path(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_summary(Path(config.hydra.sweep.dir))


def refresh_sweep_summary() -> None:
    """Writes the sweep summary of a `-m` job that ends with an error or a signal, so it is listed with its
    status; a summary that cannot be written says why without hiding the job's own error."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    try:
        write_summary(Path(HydraConfig.get().sweep.dir))
    except ReidError as error:
        print(f"\nThe sweep summary was not refreshed: {error}", file=sys.stderr)
