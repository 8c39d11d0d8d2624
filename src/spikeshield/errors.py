"""Errors that reach the user as one clear line.

Every error raised on purpose by spikeshield derives from :class:`SpikeshieldError`. The CLI
prints its message (no traceback) and exits with :attr:`SpikeshieldError.exit_code`:
2 for a usage error (bad name, bad number, bad option), 1 for a runtime problem (missing or
corrupt file, unwritable folder).

Problems spikeshield works around (no compiler, so the reference loop runs; no matplotlib, so
no figure) are warnings, raised with :func:`warn` so that they name the caller's line.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path


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


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` pointed at the first frame outside spikeshield and torch: the caller's
    line (``model(x)`` in their script), however deep in a forward the problem was found."""
    internal = [str(Path(__file__).parent) + os.sep]
    torch = sys.modules.get("torch")
    if getattr(torch, "__file__", None):
        internal.append(str(Path(torch.__file__).parent) + os.sep)
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(tuple(internal)):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
