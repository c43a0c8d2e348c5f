"""A run never overwrites another: it refuses a folder that holds one, and a sweep job continues its own.

Hydra picks the folder (`hydra.run.dir`, or `hydra.sweep.dir` and the job's name from
`reid.tasks.job_folders`); `run_in_folder` looks at it before anything is written there:

- a single run needs a folder without a run in it (runs get new dated folders), unless it resumes the
  run there (`ckpt_path=<folder>/checkpoints/last.ckpt`);
- a sweep job whose folder holds its completed run (same overrides) is skipped: it prints one line and
  returns the recorded final metrics, so a sweeper (Optuna) still gets its value; one whose folder holds
  its interrupted, failed or unfinished run resumes from `checkpoints/last.ckpt`; a new one trains. A run
  with other overrides there, or one without a checkpoint to resume from, stops the job with an error
  naming the folder.

Each start of a run records its config in the folder: `.hydra/` (config.yaml, hydra.yaml, overrides.yaml,
as Hydra writes them) when the run starts, `.hydra/resume-1/`, ... when it resumes. Hydra writes none of
them itself (`hydra.output_subdir: null`): it would before these checks. A sweep's summary is refreshed
when a job ends in any way, also on Ctrl-C or SIGTERM, which end a job without Hydra's `on_job_end`.
"""

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from reid.errors import ConfigError, ReidError
from reid.reporting.sweeps import (
    RESULTS_FILE,
    Run,
    as_written,
    parse_overrides,
    read_run,
    write_summary,
)

CONFIG_DIR = ".hydra"
RUN_FILES = (RESULTS_FILE, "checkpoints", "tensorboard", "embeddings", CONFIG_DIR)  # what a run writes
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


def run_in_folder(task: Callable[[DictConfig], dict[str, float]], cfg: DictConfig) -> dict[str, float]:
    """Runs `task` in this Hydra job's folder as the module docstring says; outside Hydra (a config
    composed in code) the caller owns the folder, and in a DDP process other than global rank 0 (started
    into rank 0's folder) the rank-0 process has checked it: there `task` just runs."""
    if not HydraConfig.initialized() or not is_global_rank_zero():
        return task(cfg)
    hydra = HydraConfig.get()
    folder = Path(hydra.runtime.output_dir)
    if hydra.mode != RunMode.MULTIRUN:
        check_run_folder(folder, cfg.ckpt_path)
        record_config(folder, cfg)
        return task(cfg)
    try:
        earlier = earlier_job(folder, parse_overrides(as_written(hydra.overrides.task)))
        if earlier is not None and earlier.status == "completed":
            final, monitor = earlier.results["final"], earlier.results["monitor"]
            print(f"Skipped: '{folder}' holds this job's completed run ({monitor} {final.get(monitor)}).")
            return final
        if earlier is not None:
            cfg.ckpt_path = str(folder / LAST_CHECKPOINT)
            state = "unfinished" if earlier.status == "missing" else earlier.status  # missing: no results
            print(f"Resuming this job's {state} run from '{cfg.ckpt_path}'.")
        record_config(folder, cfg)
        return task(cfg)
    finally:
        refresh_summary(Path(hydra.sweep.dir))


def refresh_summary(sweep_dir: Path) -> None:
    """Writes the sweep's summary as a job ends, however it ends; a summary that cannot be written (a sweep
    whose first job stopped before starting, a full disk) says why without hiding the job's own error."""
    try:
        write_summary(sweep_dir)
    except ReidError as error:
        print(f"\nThe sweep summary was not refreshed: {error}", file=sys.stderr)


def is_global_rank_zero() -> bool:
    """Whether this process is the first of its run: every rank variable that Lightning's DDP launcher,
    torchrun or Slurm's srun sets is 0 or absent."""
    return all(int(os.environ.get(name, 0)) == 0 for name in RANK_VARIABLES)


def run_files(folder: Path) -> list[str]:
    """The files and folders of a run found in `folder` (Hydra's log does not count: Hydra opens it first)."""
    return [name for name in RUN_FILES if (folder / name).exists()]


def check_run_folder(folder: Path, ckpt_path: str | None) -> None:
    """Raises `ConfigError` when `folder` holds a run that `ckpt_path` does not resume."""
    found = run_files(folder)
    if not found or (ckpt_path and folder.resolve() in Path(ckpt_path).resolve().parents):
        return
    last = folder / LAST_CHECKPOINT
    choices = f"pass a new folder, or continue that run with ckpt_path={last}" if last.is_file() else ""
    raise ConfigError(
        f"'{folder}' already holds a run ({', '.join(found)}), and a new run there would overwrite it. "
        f"Leave out hydra.run.dir (every run gets a new dated folder), {choices or 'or pass a new folder'}."
    )


def earlier_job(folder: Path, overrides: dict[str, Any]) -> Run | None:
    """The run this sweep job left in `folder` before: None when there is none; raises `ConfigError` when
    the folder holds a run this job cannot continue (other overrides, or nothing to resume from)."""
    found = run_files(folder)
    if not found:
        return None
    if not (folder / RESULTS_FILE).is_file() and not (folder / CONFIG_DIR / "overrides.yaml").is_file():
        raise ConfigError(
            f"'{folder}' holds files of a run ({', '.join(found)}) without its results.json or "
            ".hydra/overrides.yaml, so this sweep job cannot tell whether it is its own. Move that folder "
            "away, then run the sweep again."
        )
    run = read_run(folder, folder.parent)
    if run.overrides != overrides:
        raise ConfigError(
            f"'{folder}' holds a run with other overrides ({differences(run.overrides, overrides)}), "
            "which this sweep job would overwrite. Continue a sweep with the overrides it started with "
            "(more values of its swept keys may be added), or start this one in a new folder with "
            "hydra.sweep.dir=<folder>."
        )
    if run.status != "completed" and not (folder / LAST_CHECKPOINT).is_file():
        raise ConfigError(
            f"'{folder}' holds this job's {run.status} run, but no {LAST_CHECKPOINT} to resume it from (it "
            "stopped before its first epoch ended). Move or delete that folder to train the job anew, then "
            "run the sweep again."
        )
    return run


def differences(there: dict[str, Any], here: dict[str, Any]) -> str:
    """`key: value there, value here` for each override that differs (`-` where one side has none)."""
    shown = {
        key: (repr(there[key]) if key in there else "-", repr(here[key]) if key in here else "-")
        for key in dict.fromkeys([*there, *here])
    }
    return "; ".join(f"{key}: {a} there, {b} here" for key, (a, b) in shown.items() if a != b)


def record_config(folder: Path, cfg: DictConfig) -> None:
    """Writes this start's config, Hydra config and overrides into `<folder>/.hydra/`, or into
    `.hydra/resume-<n>/` when an earlier start of the run wrote there."""
    target, n = folder / CONFIG_DIR, 0
    while target.exists():
        n += 1
        target = folder / CONFIG_DIR / f"resume-{n}"
    target.mkdir(parents=True)
    hydra = HydraConfig.get()
    OmegaConf.save(cfg, target / "config.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": hydra}), target / "hydra.yaml")
    OmegaConf.save(hydra.overrides.task, target / "overrides.yaml")
