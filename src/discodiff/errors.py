"""The exceptions that mean "the user asked for something that cannot be done".

The command line prints a :class:`UserError` as one line and exits with status 2; any other
exception is a bug and keeps its traceback. Raise these for bad configs, data, files, arguments
and runs; raise plain exceptions (``ValueError``, ``RuntimeError``, ...) for broken invariants.
"""

from __future__ import annotations


class UserError(Exception):
    """Base of every user mistake: the message says what is wrong and what is allowed."""


class ConfigError(UserError, ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


class DataError(UserError, ValueError):
    """A data file or data value cannot be used (names the file, line or field)."""


class UsageError(UserError, ValueError):
    """A call's arguments are not allowed (sampler, steps, labels, known values, CLI options)."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing, damaged or does not fit the model."""


class TrainingError(UserError, RuntimeError):
    """Training cannot go on (a non-finite loss or gradient)."""
