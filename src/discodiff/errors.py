"""Error classes: every user mistake raises a :class:`UserError`, which the command line prints
as one line (exit status 2); any other exception is a bug and keeps its traceback."""

from __future__ import annotations


class UserError(Exception):
    """Base of every error caused by the user's input (config, data, run directory)."""


class ConfigError(UserError, ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


class DataError(UserError, ValueError):
    """A data file or data set cannot be used as given."""


class CheckpointError(UserError):
    """A checkpoint or run directory is missing, incomplete, corrupted or in use."""


class TrainingError(UserError):
    """Training cannot go on (non-finite loss or gradient, a failed save)."""
