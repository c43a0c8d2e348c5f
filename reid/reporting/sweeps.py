"""A sweep folder as one table (`summary.csv`, `summary.md`) and one plot (`summary.png`).

Runs are read from their `results.json` (written by `reid.training.results`, which takes the file name
and `parse_overrides` from here). Runs without final results are listed with their status, not dropped: a run
that failed, was interrupted, is still running ("missing") or never started ("not started": in the basic
sweeper's grid of `multirun.yaml` but without a folder). `reid.tasks.sweep_summary.SweepSummary` is the
Hydra callback that writes the files into the sweep folder; `scripts/summarize.py` rebuilds them.
"""

import csv
import io
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from reid.errors import DataError
from reid.files import atomic_file, write_text

RESULTS_FILE = "results.json"  # in each run folder, written by reid.training.results.ResultsWriter
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"  # its `_target_` in multirun.yaml
SUMMARY_FILES = ("summary.csv", "summary.md", "summary.png")
DEFAULT_MONITOR = ("val/mAP", "max")  # when no run has results yet
MAX_LINES = 10  # more groups than this are drawn as points without a legend (e.g. Optuna trials)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Hydra override strings (`margin=0.2`, `+trainer.x=1`, `~callbacks.y`) -> {key: value}.

    Uses Hydra's own parser, so values get the types Hydra gives them (`1e-3` is a float, `null` None).
    """
    parsed = OverridesParser.create().parse_overrides(overrides)
    return {o.key_or_group: None if o.is_delete() else o.value() for o in parsed}


@dataclass
class Run:
    """One run of a sweep: its folder relative to the sweep ("" if it never started), its overrides
    (`key: value`) and its `results.json` (None when absent)."""

    name: str
    overrides: dict[str, Any]
    results: dict[str, Any] | None

    @property
    def status(self) -> str:
        if self.results is not None:
            return self.results["status"]
        return "missing" if self.name else "not started"


def natural_key(name: str) -> list:
    """Sort key that puts run folder `10` after `9`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def read_run(run_dir: Path, sweep_dir: Path) -> Run:
    """A run folder's results, and its overrides from `results.json`, else Hydra's `.hydra/overrides.yaml`."""
    results_path = run_dir / RESULTS_FILE
    results = json.loads(results_path.read_text()) if results_path.is_file() else None
    if results is not None:
        overrides = results["overrides"]
    else:
        overrides = parse_overrides(list(OmegaConf.load(run_dir / ".hydra" / "overrides.yaml")))
    return Run(run_dir.relative_to(sweep_dir).as_posix(), overrides, results)


def planned_overrides(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every job of the basic sweeper's grid, from `<sweep>/multirun.yaml` and the earlier grids of a sweep
    continued in the same folder (`multirun.1.yaml`, ...), each job once; [] for other sweepers (Optuna
    picks its trials as it goes) or when there is no such file."""
    planned: list[dict[str, Any]] = []
    for path in sorted(sweep_dir.glob("multirun*.yaml"), key=lambda path: natural_key(path.name)):
        hydra_cfg = OmegaConf.load(path).hydra
        if hydra_cfg.sweeper.get("_target_") != BASIC_SWEEPER:
            continue
        params = as_written(hydra_cfg.sweeper.get("params") or {})
        arguments = [f"{key}={value}" for key, value in params.items()] + as_written(hydra_cfg.overrides.task)
        jobs = [parse_overrides(list(job)) for job in sweep_grid(arguments)]
        planned += [job for job in jobs if job not in planned]
    return planned


def as_written(node: Any) -> Any:
    """A config node as plain Python, its `${...}` left as written: overrides such as `key=${margin}` are
    stored in a config file that would resolve them against itself."""
    return OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node


def sweep_grid(arguments: list[str]) -> list[tuple[str, ...]]:
    """The jobs of a grid sweep, in the basic sweeper's order: the product of every key's values, a
    later value of the same key replacing an earlier one (`margin=0.2,0.5 seed=0` -> two jobs)."""
    choices: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(arguments):
        key = override.get_key_element()
        if override.is_sweep_override():
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
    return list(itertools.product(*choices.values()))


def collect_runs(sweep_dir: Path) -> list[Run]:
    """The sweep's run folders (those with `results.json` or `.hydra/overrides.yaml`), in folder order,
    then the planned jobs that have no folder."""
    markers = [*sweep_dir.glob(f"**/{RESULTS_FILE}"), *sweep_dir.glob("**/.hydra/overrides.yaml")]
    run_dirs = {path.parent.parent if path.parent.name == ".hydra" else path.parent for path in markers}
    run_dirs.discard(sweep_dir)
    runs = [read_run(d, sweep_dir) for d in run_dirs]
    runs.sort(key=lambda run: natural_key(run.name))
    started = [run.overrides for run in runs]
    runs += [
        Run("", overrides, None) for overrides in planned_overrides(sweep_dir) if overrides not in started
    ]
    return runs


def swept_keys(runs: list[Run]) -> list[str]:
    """The override keys whose values differ between runs, in the order they were given."""
    keys = dict.fromkeys(key for run in runs for key in run.overrides)
    return [key for key in keys if len({repr(run.overrides.get(key)) for run in runs}) > 1]


def monitor_of(runs: list[Run]) -> tuple[str, str]:
    """(monitored metric, "max" or "min") as the runs recorded them."""
    for run in runs:
        if run.results is not None:
            return run.results["monitor"], run.results["mode"]
    return DEFAULT_MONITOR


def summary_table(runs: list[Run]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows: one row a run, the swept keys then the best monitored value (with its epoch and
    step), the final metrics and the wall time. Completed runs come first, best first; the others follow
    with their status and no metrics."""
    monitor, mode = monitor_of(runs)
    keys = swept_keys(runs)
    finals = sorted({k for run in runs if run.status == "completed" for k in run.results["final"]})
    finals.sort(key=lambda k: k != monitor)  # the monitored metric first, the rest alphabetically
    columns = ["run", "status", *keys, f"best {monitor}", "best epoch", "best step"]
    columns += [f"final {k}" for k in finals] + ["wall_time_s"]
    rows = []
    for run in runs:
        row = {"run": run.name, "status": run.status, **{k: run.overrides.get(k) for k in keys}}
        if run.status == "completed":
            best = run.results["best"] or {}
            row |= {f"best {monitor}": best.get(monitor), "best epoch": best.get("epoch")}
            row |= {"best step": best.get("step"), "wall_time_s": run.results["wall_time_s"]}
            row |= {f"final {k}": run.results["final"].get(k) for k in finals}
        rows.append({column: row.get(column) for column in columns})
    best, sign = f"best {monitor}", -1 if mode == "max" else 1
    ranked = [row for row in rows if row[best] is not None]
    ranked.sort(key=lambda row: sign * row[best])
    return columns, ranked + [row for row in rows if row[best] is None]


def to_csv(columns: list[str], rows: list[dict[str, Any]]) -> str:
    """The table as CSV; empty cells for values a run does not have, floats at full precision."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def format_cell(value: Any) -> str:
    """A table cell for people: 4 decimals (or 4 significant digits for tiny and huge values)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return (
            f"{value:.4g}"
            if abs(value) < 1e-3 or abs(value) >= 1e4
            else f"{value:.4f}".rstrip("0").rstrip(".")
        )
    return str(value)


def to_markdown(columns: list[str], rows: list[dict[str, Any]], runs: list[Run], sweep_dir: Path) -> str:
    """A heading that says what was swept and how many runs finished, then the table."""
    monitor, mode = monitor_of(runs)
    done = sum(run.status == "completed" for run in runs)
    lines = [
        f"# Sweep `{sweep_dir}`",
        "",
        f"{done} of {len(runs)} runs completed; sorted by the best {monitor} "
        f"({'higher' if mode == 'max' else 'lower'} is better). "
        f"Swept: {', '.join(swept_keys(runs)) or 'nothing'}.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(format_cell(row[c]) for c in columns) + " |" for row in rows]
    missing = [row for row in rows if row["status"] != "completed"]
    if missing:
        lines += ["", f"Without final results: {len(missing)} run(s), listed last with their status."]
    return "\n".join(lines) + "\n"


def draw_panel(ax: Axes, key: str, keys: list[str], done: list[Run], monitor: str) -> None:
    """The best `monitor` against `key`: a line per combination of the other swept keys for a grid, points
    when the runs do not form lines (e.g. Optuna trials); numeric keys spanning a factor of 20 or more get
    a log axis, other keys one tick per value."""
    values = [run.overrides.get(key) for run in done]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    ticks = sorted({format_cell(v) for v in values}, key=natural_key)
    groups: dict[str, list[tuple[Any, float]]] = {}
    for run, value in zip(done, values, strict=True):
        label = ", ".join(f"{k}={format_cell(run.overrides.get(k))}" for k in keys if k != key)
        x = value if numeric else ticks.index(format_cell(value))
        groups.setdefault(label, []).append((x, run.results["best"][monitor]))
    lines = len(groups) <= MAX_LINES and any(len(points) > 1 for points in groups.values())
    for label, points in groups.items():
        xs, ys = zip(*sorted(points), strict=True)
        if lines:
            ax.plot(xs, ys, marker="o", label=label or None)
        else:
            ax.scatter(xs, ys, color="tab:blue", s=15)
    if numeric and min(values) > 0 and max(values) >= 20 * min(values):
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(range(len(ticks)), ticks)
    elif lines:  # a grid: tick exactly the swept values
        ax.set_xticks(sorted(set(values)), [format_cell(v) for v in sorted(set(values))])
        ax.minorticks_off()
    if lines and len(groups) > 1:
        ax.legend(fontsize=8)
    ax.set_xlabel(key)
    ax.set_ylabel(f"best {monitor}")
    ax.grid(alpha=0.3)


def plot_summary(runs: list[Run]) -> Figure:
    """One panel per swept key (`draw_panel`) over the completed runs."""
    monitor, _ = monitor_of(runs)
    keys = swept_keys(runs)
    done = [run for run in runs if run.status == "completed" and run.results["best"] is not None]
    figure = Figure(figsize=(5 * max(len(keys), 1), 4))
    axes = figure.subplots(1, max(len(keys), 1), squeeze=False)
    if not keys or not done:
        axes[0, 0].text(0.5, 0.5, "nothing swept" if done else "no completed runs yet", ha="center")
        axes[0, 0].set_axis_off()
        return figure
    for key, ax in zip(keys, axes[0], strict=True):
        draw_panel(ax, key, keys, done, monitor)
    figure.tight_layout()
    return figure


def write_summary(sweep_dir: Path) -> list[Path]:
    """Writes `summary.csv`, `summary.md` and `summary.png` into the sweep folder; returns their paths.

    Raises `DataError` when the folder holds no runs.

    Each file is written atomically (`reid.files`), so parallel jobs refreshing the summary (and readers)
    never see half a file.
    """
    runs = collect_runs(sweep_dir)
    if not runs:
        raise DataError(
            f"'{sweep_dir}' holds no runs (no */results.json, */.hydra/overrides.yaml or multirun.yaml). "
            "Pass the sweep folder of a `train.py -m` run (its hydra.sweep.dir)."
        )
    columns, rows = summary_table(runs)
    paths = [sweep_dir / name for name in SUMMARY_FILES]
    write_text(paths[0], to_csv(columns, rows))
    write_text(paths[1], to_markdown(columns, rows, runs, sweep_dir))
    with atomic_file(paths[2]) as file:
        plot_summary(runs).savefig(file, format="png", dpi=100)
    return paths
