"""Errors that reach the user as one clear line.

Every error raised on purpose by spikeshield derives from :class:`SpikeshieldError`. The CLI
prints its message (no traceback) and exits with :attr:`SpikeshieldError.exit_code`:
2 for a usage error (bad name, bad number, bad option), 1 for a runtime problem (missing or
corrupt file, unwritable folder).
"""

from __future__ import annotations


class SpikeshieldError(Exception):
    """Base class of every deliberate spikeshield error."""

    exit_code: int = 1


class UsageError(SpikeshieldError, ValueError):
    """The caller asked for something that cannot exist: unknown name, invalid value or option."""

    exit_code = 2


class DataError(SpikeshieldError, OSError):
    """A data file is missing, truncated or not in the expected format."""

    exit_code = 1


class CheckpointError(SpikeshieldError):
    """A checkpoint cannot be loaded: wrong format, wrong model, or unsafe content."""

    exit_code = 1


class DataWarning(UserWarning):
    """Data the format allows but that looks wrong (events out of time order, empty recordings):
    read anyway, with one warning that says how many."""
