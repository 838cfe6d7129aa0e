"""The one exception family: every error a user can fix derives from UnetkitError, and the CLI
turns each into a single `error: ...` line and exit code 2 (no traceback)."""

from __future__ import annotations


class UnetkitError(Exception):
    """Something the user can fix; the message names the file or value and says how."""


class ConfigError(UnetkitError, ValueError):
    """A configuration key or value is wrong; the message names it and says what is allowed."""


class DataError(UnetkitError, ValueError):
    """A file or dataset is unusable; the message names the file and the fix."""


class CheckpointError(UnetkitError, ValueError):
    """A checkpoint is missing, corrupt, or not one of ours; the message says which and what to do."""


class TrainingError(UnetkitError, RuntimeError):
    """Training cannot go on (e.g. the loss became NaN); the message says where and what to try."""
