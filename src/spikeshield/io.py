"""Atomic file writes: a file is either its old complete self or its new complete self.

Every file spikeshield writes (checkpoints, metrics, results, caches) goes through here: the
data is written to a temporary file in the same folder, flushed to disk, then renamed over the
target. A run killed at any moment, or a full disk, never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from spikeshield.errors import SpikeshieldError


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()


class OutputError(SpikeshieldError):
    """An output file or folder cannot be written."""

    exit_code = 1


def ensure_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and parents) or fail with a clear error."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {p}: {exc.strerror or exc}") from None
    if not os.access(p, os.W_OK):
        raise OutputError(f"output folder {p} is not writable")
    return p


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename)."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple):
        return list(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def read_json(path: str | os.PathLike[str], what: str = "file") -> Any:
    """Read a JSON file with a clear error if it is missing or malformed."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpikeshieldError(f"{what} not found: {p}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpikeshieldError(f"{what} {p} is not valid JSON: {exc}") from None


def refuse_to_replace(paths: list[Path], *, overwrite: bool, what: str = "output") -> None:
    """Raise :class:`~spikeshield.errors.UsageError` naming the first of ``paths`` that exists,
    unless ``overwrite``: nothing a user produced is replaced without being asked."""
    from spikeshield.errors import UsageError

    existing = [p for p in paths if Path(p).exists()]
    if existing and not overwrite:
        raise UsageError(
            f"{existing[0]} already exists (an earlier {what}); pass --overwrite to replace it, "
            "or choose another --out"
        )
