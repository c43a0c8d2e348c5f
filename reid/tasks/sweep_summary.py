"""The Hydra callback of sweeps: records the sweep's config as it starts and writes its summary at the end.

Jobs refresh the summary themselves as they end (`reid.tasks.run_folder`), also when Ctrl-C or SIGTERM
stops them, when Hydra's `on_job_end` does not run. Loading this callback also registers the resolver that
names job folders (`reid.tasks.job_folders`), in every process that runs a job.
"""

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from reid.reporting.sweeps import write_summary
from reid.tasks.job_folders import record_sweep


class SweepSummary(Callback):
    """Hydra callback: writes `<sweep>/multirun.yaml` when a multirun starts (`record_sweep`: what names
    the job folders, kept when a sweep is continued with other values) and the summary when it ends."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        record_sweep(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_summary(Path(config.hydra.sweep.dir))
