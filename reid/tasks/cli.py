"""What every command-line entry point shares: a headless figure backend and one-paragraph errors."""

import sys
from collections.abc import Callable

import matplotlib
from omegaconf import DictConfig

from reid.errors import ReidError
from reid.tasks.sweep_summary import refresh_sweep_summary


def run_cli(task: Callable[[DictConfig], dict[str, float]], cfg: DictConfig) -> dict[str, float]:
    """Run `task`; a `ReidError` (bad input, a full disk, a signal) is printed as one paragraph and exits
    with its `exit_status` (1, or 128 + the signal's number), after refreshing the summary of the sweep the
    run belongs to (Hydra's end-of-job callback does not run after an exit).

    Figures are only written to files here, so matplotlib gets its file backend (no display needed).
    """
    matplotlib.use("Agg")
    try:
        return task(cfg)
    except ReidError as error:
        print(f"\nError: {error}", file=sys.stderr)
        refresh_sweep_summary()
        sys.exit(error.exit_status)
