"""What every command-line entry point shares: a headless figure backend and one-paragraph errors."""

import sys
from collections.abc import Callable

import matplotlib
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from reid.errors import ReidError


def run_cli(task: Callable[[DictConfig], dict[str, float]], cfg: DictConfig) -> dict[str, float]:
    """Run `task`; a `ReidError` (bad input, a full disk, a signal) is printed as one paragraph and exits
    with its `exit_status` (1, or 128 + the signal's number). So is one raised while a config node is
    instantiated (a backbone's weights file that does not fit), which Hydra wraps in its own exception.

    Figures are only written to files here, so matplotlib gets its file backend (no display needed).
    """
    matplotlib.use("Agg")
    try:
        return task(cfg)
    except (ReidError, InstantiationException) as error:
        cause = error
        while isinstance(cause, InstantiationException):
            cause = cause.__cause__
        if not isinstance(cause, ReidError):
            raise
        print(f"\nError: {cause}", file=sys.stderr)
        sys.exit(cause.exit_status)
