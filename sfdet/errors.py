"""User-facing errors.

Anything a user can cause (bad path, malformed row, wrong config key, missing
weights) raises `SfdetError` with one line that says what is wrong and what to
do. The command-line entry point prints that line and exits non-zero, never a
traceback.
"""


class SfdetError(Exception):
    """An error caused by the user's input, with a one-line, actionable message."""


class ConfigError(SfdetError):
    """A config file or override names an unknown key or holds a wrong value."""


class DataError(SfdetError):
    """A data file (CSV, label map, video, frames) is missing or malformed."""


class CheckpointError(SfdetError):
    """A checkpoint is missing, unreadable, or does not fit the model."""
