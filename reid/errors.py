"""User-facing errors: one clear paragraph that names the file or key and says how to fix it.

The entry points (`train.py`, `evaluate.py`) print a `ReidError` without a traceback and exit with its
`exit_status` (1; 130 or 143 after a signal); anything else is a bug and keeps its traceback.
"""


class ReidError(Exception):
    """Base class of errors caused by the user's input or the machine (files, config, a full disk, a
    signal), not by a bug."""

    exit_status = 1


class ConfigError(ReidError):
    """A configuration value is invalid (names the key and the accepted values)."""


class DataError(ReidError):
    """A dataset file or folder is missing or malformed (names the path and what was expected)."""


class FileWriteError(ReidError):
    """A file could not be written (a full disk, no permission): names the folder and what was kept."""


class Interrupted(ReidError):
    """A signal (Ctrl-C, a scheduler's SIGTERM) stopped the run; exits with 128 + the signal's number."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_status = 128 + signum
