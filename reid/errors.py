"""User-facing errors: one clear paragraph that names the file or key and says how to fix it.

The entry points (`train.py`, `evaluate.py`) print a `ReidError` without a traceback and exit with
status 1; anything else is a bug and keeps its traceback.
"""


class ReidError(Exception):
    """Base class of errors caused by the user's input (files, config), not by a bug."""


class ConfigError(ReidError):
    """A configuration value is invalid (names the key and the accepted values)."""


class DataError(ReidError):
    """A dataset file or folder is missing or malformed (names the path and what was expected)."""
