"""Atomic file writes, and reads that accept regular files only.

Every file spikeshield writes (checkpoints, metrics, results, caches) goes through here: the
data is written to a temporary file in the same folder, flushed to disk, then renamed over the
target. A run killed at any moment, or a full disk, never leaves a half-written file.

Every file spikeshield reads goes through :func:`open_regular` (or :func:`read_regular`): it
opens without blocking and checks, on the open descriptor, that the path is a regular file, so
a FIFO, a device, a folder, a dangling symbolic link or a symbolic-link loop in its place is
one clear error instead of a read that blocks forever or an exception from deep inside.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

from spikeshield.errors import DataError, SpikeshieldError

CACHE_ENV = "SPIKESHIELD_CACHE"


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()


class OutputError(SpikeshieldError):
    """An output file or folder cannot be written."""

    exit_code = 1


def cache_dir() -> Path:
    """Where spikeshield keeps what it can rebuild: ``$SPIKESHIELD_CACHE``, else
    ``$XDG_CACHE_HOME/spikeshield``, else ``~/.cache/spikeshield``.

    Holds decoded dataset arrays (``datasets/``) and the compiled CPU kernels (``kernels/``);
    never inside a data folder (data folders may be read-only and are never written to).
    Deleting it loses nothing but time. A relative ``XDG_CACHE_HOME`` is ignored, as the XDG
    Base Directory specification asks. Nothing here needs the folder to be writable: where it
    is not, datasets are decoded without being cached and neurons run the reference loop
    instead of the fused kernels (each with one warning).
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "spikeshield"
    return Path.home() / ".cache" / "spikeshield"


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


_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFDIR: "a folder",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _unreadable(p: Path, what: str, exc: OSError, error: type[SpikeshieldError]) -> SpikeshieldError:
    if isinstance(exc, FileNotFoundError):
        if p.is_symlink():
            return error(f"{p}: {what} is a dangling symbolic link (its target does not exist)")
        return error(f"{p}: {what} not found")
    if exc.errno == errno.ELOOP:
        return error(f"{p}: {what} is a symbolic-link loop")
    return error(f"{p}: cannot read {what} ({exc.strerror or exc})")


def _check_regular(p: Path, what: str, mode: int, error: type[SpikeshieldError]) -> None:
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "not a plain file")
        raise error(f"{p}: {what} is {kind}, not a regular file")


def regular_stat(
    path: str | os.PathLike[str], what: str = "file", *, error: type[SpikeshieldError] = DataError
) -> os.stat_result:
    """``os.stat`` of ``path`` (following symbolic links) if it is a regular file; else the
    error :func:`open_regular` raises."""
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        raise _unreadable(p, what, exc, error) from None
    _check_regular(p, what, st.st_mode, error)
    return st


def open_regular(
    path: str | os.PathLike[str], what: str = "file", *, error: type[SpikeshieldError] = DataError
) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file (after following symbolic links).

    The open never blocks (``O_NONBLOCK``; a FIFO is refused before anything is read) and the
    check is made on the open descriptor, so the file cannot be swapped in between.

    Raises:
        error: (default :class:`DataError`) naming ``path`` and what is wrong: missing, a
            dangling symbolic link, a symbolic-link loop, not a regular file, unreadable.
    """
    p = Path(path)
    nonblock = getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(p, os.O_RDONLY | nonblock | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _unreadable(p, what, exc, error) from None
    try:
        _check_regular(p, what, os.fstat(fd).st_mode, error)
        if nonblock:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(
    path: str | os.PathLike[str],
    what: str = "file",
    *,
    max_bytes: int | None = None,
    error: type[SpikeshieldError] = DataError,
) -> bytes:
    """The bytes of a regular file (see :func:`open_regular`), refusing one larger than
    ``max_bytes`` before reading it."""
    p = Path(path)
    with open_regular(p, what, error=error) as fh:
        size = os.fstat(fh.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            raise error(f"{p}: {what} is {size} bytes, more than the {max_bytes} such a file can hold")
        try:
            return fh.read()
        except OSError as exc:
            raise error(f"{p}: cannot read {what} ({exc.strerror or exc})") from None


MAX_JSON_BYTES = 64 << 20
"""The largest JSON file spikeshield reads (its own are kilobytes)."""


def read_json(
    path: str | os.PathLike[str],
    what: str = "file",
    schema: Any = Any,
    *,
    error: type[SpikeshieldError] = SpikeshieldError,
) -> Any:
    """Read a JSON file, checked against ``schema`` (see :mod:`spikeshield.schema`).

    Raises:
        error: one line naming the file (and the field, for a schema error) if the file is
            missing, not a regular file, not UTF-8 JSON, nested too deeply, or does not match
            ``schema``.
    """
    from spikeshield.schema import decode_json

    raw = read_regular(path, what, max_bytes=MAX_JSON_BYTES, error=error)
    return decode_json(raw, schema, f"{Path(path)}", error=error)


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
