"""Sweep job folders named by their swept values, `<sweep>/embed_dim=8,margin=0.2/`, and the sweep's record.

A job's folder is named by its own overrides of the keys the sweep varies (given several values or a range
on the command line, `margin=0.2,0.5`, or searched by the sweeper's `params`, as Optuna's), sorted by key.
A sweep run again into its folder (`hydra.sweep.dir=<sweep>`), also with more values, so finds each of its
jobs' folders again, and a new value gets a new folder (`reid.tasks.run_folder` decides what a job does
with a folder it finds). `/` and `%` in values are written `%2F` and `%25`, so a name is one folder and
never a path; a name over `MAX_NAME` bytes is cut and ends with a hash of the whole. With nothing swept
(`-m margin=0.2`) every override of the job names it.

`configs/hydra/default.yaml` sets `hydra.sweep.subdir: ${reid.job_folder:}`, which Hydra resolves in the
process that runs the job, a joblib or Slurm worker too. Importing this module registers that resolver;
`reid.tasks.sweep_summary`, whose callback every sweep loads into each of those processes, imports it.
The swept keys are read from the sweep's config, `<sweep>/multirun.yaml`, which that callback writes when
the sweep starts (`record_sweep`).
"""

import hashlib
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from reid.files import clear_leftovers, write_text
from reid.reporting.sweeps import as_written

RESOLVER = "reid.job_folder"
SWEEP_CONFIG = "multirun.yaml"  # Hydra's name: its basic sweeper writes the same file
REWRITTEN_BY_SWEEPERS = (SWEEP_CONFIG, "optimization_results.yaml")  # Optuna writes the second at the end
MAX_NAME = 200  # bytes; file systems allow 255
NOTHING_OVERRIDDEN = "defaults"


def swept_keys_of(sweep_config: DictConfig) -> set[str]:
    """The keys a sweep's config varies: its sweeper's `params` and its sweeping overrides (`a=1,2`,
    `a=range(1,4)`, `a=interval(0.1,1)`)."""
    params = sweep_config.hydra.sweeper.get("params") or {}
    overrides = OverridesParser.create().parse_overrides(as_written(sweep_config.hydra.overrides.task))
    return set(params) | {o.key_or_group for o in overrides if o.is_sweep_override()}


def folder_name(overrides: list[str], keys: set[str]) -> str:
    """A job's folder name: its overrides of `keys` (all of them when none is of `keys`), sorted by key and
    joined by commas, as one safe folder name."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    named = sorted((o.key_or_group, text) for o, text in zip(parsed, overrides, strict=True))
    chosen = [text for key, text in named if key in keys] or [text for _, text in named]
    name = (",".join(chosen) or NOTHING_OVERRIDDEN).replace("%", "%25").replace("/", "%2F")
    if len(name.encode()) <= MAX_NAME:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    return name.encode()[: MAX_NAME - 11].decode(errors="ignore") + "-" + digest


def job_folder(*, _root_: DictConfig) -> str:
    """The `${reid.job_folder:}` resolver: the folder name of the job whose config is `_root_`."""
    hydra = _root_.hydra
    record = Path(hydra.sweep.dir) / SWEEP_CONFIG
    keys = swept_keys_of(OmegaConf.load(record) if record.is_file() else _root_)
    return folder_name(as_written(hydra.overrides.task), keys)


def keep_aside(path: Path) -> Path:
    """Renames `path` to the first free `<stem>.<n><suffix>` (n = 1, 2, ...) and returns the new path."""
    n = 1
    while (target := path.with_name(f"{path.stem}.{n}{path.suffix}")).exists():
        n += 1
    return path.rename(target)


def record_sweep(config: DictConfig) -> None:
    """Writes the sweep's config to `<sweep>/multirun.yaml` as the sweep starts (Optuna's sweeper writes
    none). Files of an earlier sweep in the same folder that this one would rewrite are kept under numbered
    names: a different `multirun.yaml` as `multirun.1.yaml`, an `optimization_results.yaml` as
    `optimization_results.1.yaml`, ..."""
    sweep_dir = Path(config.hydra.sweep.dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    clear_leftovers(sweep_dir)  # summary files of a sweep killed while writing them
    text = OmegaConf.to_yaml(config)
    for path in (sweep_dir / name for name in REWRITTEN_BY_SWEEPERS):
        if path.is_file() and not (path.name == SWEEP_CONFIG and path.read_text() == text):
            keep_aside(path)
    write_text(sweep_dir / SWEEP_CONFIG, text)


OmegaConf.register_new_resolver(RESOLVER, job_folder, replace=True)
