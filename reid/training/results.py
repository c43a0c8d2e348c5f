"""A run's outcome in `<run>/results.json`, and its final metrics in TensorBoard's HParams tab.

A sweep is compared from these files (`reid.reporting.sweeps`) without opening twelve folders; the file is
written when training ends and also when it fails or is interrupted, with a `status` saying which.
"""

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from reid.errors import ConfigError, FileWriteError, Interrupted
from reid.files import write_text
from reid.reporting.sweeps import RESULTS_FILE, parse_overrides

FINAL_TRAIN_KEYS = ("train/loss",)  # besides every `val/...` metric


def task_overrides() -> dict[str, Any]:
    """This Hydra job's command-line overrides; {} outside a Hydra run (e.g. under the compose API)."""
    if not HydraConfig.initialized():
        return {}
    return parse_overrides(list(HydraConfig.get().overrides.task))


def hparams_metrics(results: dict[str, Any]) -> dict[str, float]:
    """TensorBoard HParams metrics of a run: final `val/X` as `hp/X`, `train/X` as `hp/train_X`, and the
    best value of the monitored metric as `hp/best_X`."""
    metrics = {}
    for key, value in results["final"].items():
        split, name = key.split("/", 1)
        metrics[f"hp/{name}" if split == "val" else f"hp/{split}_{name}"] = value
    if results["best"] is not None:
        metrics[f"hp/best_{results['monitor'].split('/', 1)[-1]}"] = results["best"][results["monitor"]]
    return metrics


class ResultsWriter(pl.Callback):
    """Tracks every validation and writes `<dirpath>/results.json` when fit ends, fails or is interrupted.

    The file holds `status` ("completed", "failed" or "interrupted"; `error` says what failed),
    `monitor` and `mode`, `best` (the validation with the best monitored value: its epoch, step and
    `val/...` metrics; the first one on ties, as the checkpoint picks it), `final` (the latest `val/...`
    metrics and `train/loss`), `epochs` and `steps` done, `overrides` (this job's Hydra overrides),
    `started_at`, `finished_at`, `wall_time_s` (from this callback's creation, just before the Trainer)
    and `pid`. The best so far is kept in checkpoints, so it survives a resume. TensorBoard loggers also
    get the run's hyper-parameters with `hparams_metrics`, for the HParams tab.

    Args:
        dirpath: the run folder.
        monitor: the metric that picks the best validation (the checkpoint's `monitor`).
        mode: "max" or "min", whether a higher or a lower `monitor` is better.
    """

    def __init__(self, dirpath: str, monitor: str = "val/mAP", mode: str = "max"):
        if mode not in ("max", "min"):
            raise ConfigError(f"ResultsWriter mode='{mode}' is neither 'max' nor 'min'.")
        self.path = Path(dirpath) / RESULTS_FILE
        self.monitor = monitor
        self.mode = mode
        self.best: dict[str, float] | None = None
        self.started_at = datetime.now().astimezone()
        self._started = time.perf_counter()

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict["best"]

    def _improves(self, value: float) -> bool:
        if self.best is None:
            return True
        best = self.best[self.monitor]
        return value > best if self.mode == "max" else value < best

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if trainer.sanity_checking or self.monitor not in metrics:
            return
        if self._improves(metrics[self.monitor]):
            self.best = {"epoch": trainer.current_epoch, "step": trainer.global_step, **metrics}

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish(trainer, "completed")

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Records the failure; when `results.json` cannot be written either (the same full disk), says so
        and lets the original error through."""
        interrupted = isinstance(exception, KeyboardInterrupt | SIGTERMException | Interrupted)
        try:
            self._finish(
                trainer,
                "interrupted" if interrupted else "failed",
                f"{type(exception).__name__}: {exception}",
            )
        except FileWriteError as error:
            print(f"\n{error}", file=sys.stderr)

    def _finish(self, trainer: pl.Trainer, status: str, error: str | None = None) -> None:
        if not trainer.is_global_zero:  # under DDP every rank has the same metrics; one writes them
            return
        final = {
            k: float(v)
            for k, v in trainer.callback_metrics.items()
            if k.startswith("val/") or k in FINAL_TRAIN_KEYS
        }
        results = {
            "status": status,
            **({"error": error} if error else {}),
            "monitor": self.monitor,
            "mode": self.mode,
            "best": self.best,
            "final": final,
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "overrides": task_overrides(),
            "started_at": self.started_at.isoformat(),
            "finished_at": datetime.now().astimezone().isoformat(),
            "wall_time_s": round(time.perf_counter() - self._started, 3),
            "pid": os.getpid(),
        }
        write_text(self.path, json.dumps(results, indent=2) + "\n")  # a reader never sees half a file
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(logger.hparams, hparams_metrics(results), step=trainer.global_step)
