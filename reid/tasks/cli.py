"""What every command-line entry point shares: a headless figure backend and one-paragraph errors."""

import sys
from collections.abc import Callable

import matplotlib
from omegaconf import DictConfig

from reid.errors import ReidError


def run_cli(task: Callable[[DictConfig], dict[str, float]], cfg: DictConfig) -> dict[str, float]:
    """Run `task`; a `ReidError` (bad input, a full disk, a signal) is printed as one paragraph and exits
    with its `exit_status` (1, or 128 + the signal's number).

    Figures are only written to files here, so matplotlib gets its file backend (no display needed).
    """
    matplotlib.use("Agg")
    try:
        return task(cfg)
    except ReidError as error:
        print(f"\nError: {error}", file=sys.stderr)
        sys.exit(error.exit_status)
