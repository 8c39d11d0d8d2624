"""Read the files of a dataset straight out of a tar/zip archive or a folder, never extracting.

Data folders are read-only inputs: nothing is ever written next to them. Archives are read
sequentially (a ``.tar.gz`` is one gzip stream), so a 60,000-member archive is one pass.
"""

from __future__ import annotations

import re
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from spikeshield.errors import DataError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".zip")


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def iter_members(source: Path, pattern: re.Pattern[str]) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, content)`` for every file of ``source`` whose ``/``-separated path
    (relative to the archive or folder) matches ``pattern`` (``re.search``).

    ``source`` is a tar archive (any compression), a zip archive or a folder. A truncated or
    corrupt archive raises one :class:`DataError` naming the archive and the problem.
    """
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            rel = path.relative_to(source).as_posix()
            if path.is_file() and pattern.search(rel):
                try:
                    yield rel, path.read_bytes()
                except OSError as exc:
                    raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
        return
    if not source.is_file():
        raise DataError(f"{source}: file not found")
    if source.name.lower().endswith(".zip"):
        yield from _zip_members(source, pattern)
    else:
        yield from _tar_members(source, pattern)


def _tar_members(source: Path, pattern: re.Pattern[str]) -> Iterator[tuple[str, bytes]]:
    member = None
    try:
        with tarfile.open(source, "r|*") as archive:
            for member in archive:
                if not member.isfile() or not pattern.search(member.name):
                    continue
                handle = archive.extractfile(member)
                if handle is None:  # pragma: no cover - isfile() members always have data
                    continue
                data = handle.read()
                if len(data) != member.size:
                    raise EOFError(f"member {member.name} ends after {len(data)} of {member.size} bytes")
                yield member.name, data
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        where = f" (after member {member.name})" if member is not None else ""
        raise DataError(
            f"{source}: not a readable tar archive{where}: {exc}; the file is truncated or corrupt"
        ) from None


def _zip_members(source: Path, pattern: re.Pattern[str]) -> Iterator[tuple[str, bytes]]:
    try:
        with zipfile.ZipFile(source) as archive:
            for info in archive.infolist():
                if info.is_dir() or not pattern.search(info.filename):
                    continue
                yield info.filename, archive.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise DataError(
            f"{source}: not a readable zip archive: {exc}; the file is truncated or corrupt"
        ) from None
