"""Error classes: a :class:`UserError` is a mistake of the user (a bad config, a missing or
corrupted file) that the CLI reports in one line; any other exception is a bug."""

from __future__ import annotations


class UserError(Exception):
    """Base of every user mistake."""


class DataError(UserError, ValueError):
    """Data that cannot be read or encoded as configured (named file, field and value)."""
