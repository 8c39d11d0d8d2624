"""Read the files of a dataset straight out of a tar/zip archive or a folder, never extracting.

Data folders are read-only inputs: nothing is ever written next to them. Archives are read
sequentially (a ``.tar.gz`` is one gzip stream), so a 60,000-member archive is one pass. Each
member's size is checked against the largest file of its format (``max_bytes``) before it is
read, so a small archive holding a huge member never fills the memory; only regular files are
opened (a FIFO, a dangling symbolic link or a link loop where a data file should be is an
error), and encrypted or unsupported zip members are one clear error.
"""

from __future__ import annotations

import re
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from spikeshield.errors import DataError
from spikeshield.io import open_regular, read_regular

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".zip")


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def iter_members(source: Path, pattern: re.Pattern[str], max_bytes: int) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, content)`` for every file of ``source`` whose ``/``-separated path
    (relative to the archive or folder) matches ``pattern`` (``re.search``).

    ``source`` is a tar archive (any compression), a zip archive or a folder. ``max_bytes`` is
    the largest file the format has: a bigger one is refused before it is read.

    Raises:
        DataError: one line naming the archive (or file) and the problem: truncated or corrupt
            archive, a member over ``max_bytes``, an encrypted or unsupported zip member, a
            matching path that is not a regular file.
    """
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            rel = path.relative_to(source).as_posix()
            if pattern.search(rel) and not path.is_dir():
                yield rel, read_regular(path, "data file", max_bytes=max_bytes)
        return
    with open_regular(source, "archive") as fh:
        if source.name.lower().endswith(".zip"):
            yield from _zip_members(source, fh, pattern, max_bytes)
        else:
            yield from _tar_members(source, fh, pattern, max_bytes)


def _too_big(source: Path, name: str, size: int, max_bytes: int) -> DataError:
    return DataError(
        f"{source}: member {name} is {size} bytes, more than any file of this dataset "
        f"({max_bytes} bytes at most); the archive is corrupt or not this dataset"
    )


def _tar_members(
    source: Path, fh: BinaryIO, pattern: re.Pattern[str], max_bytes: int
) -> Iterator[tuple[str, bytes]]:
    member = None
    try:
        with tarfile.open(fileobj=fh, mode="r|*") as archive:
            for member in archive:
                if not member.isfile() or not pattern.search(member.name):
                    continue
                if member.size > max_bytes:
                    raise _too_big(source, member.name, member.size, max_bytes)
                handle = archive.extractfile(member)
                if handle is None:  # pragma: no cover - isfile() members always have data
                    continue
                data = handle.read()
                if len(data) != member.size:
                    raise EOFError(f"member {member.name} ends after {len(data)} of {member.size} bytes")
                yield member.name, data
    except DataError:
        raise
    # TypeError: tarfile's stream reader on a file cut inside the compression header
    except (tarfile.TarError, EOFError, zlib.error, OSError, TypeError) as exc:
        where = f" (after member {member.name})" if member is not None else ""
        raise DataError(
            f"{source}: not a readable tar archive{where}: {exc}; the file is truncated or corrupt"
        ) from None


def _zip_members(
    source: Path, fh: BinaryIO, pattern: re.Pattern[str], max_bytes: int
) -> Iterator[tuple[str, bytes]]:
    try:
        with zipfile.ZipFile(fh) as archive:
            for info in archive.infolist():
                if info.filename.endswith("/") or not pattern.search(info.filename):
                    continue
                if info.flag_bits & 0x1:
                    raise DataError(
                        f"{source}: member {info.filename} is encrypted; spikeshield reads no passwords"
                    )
                if info.file_size > max_bytes:
                    raise _too_big(source, info.filename, info.file_size, max_bytes)
                yield info.filename, archive.read(info)
    except DataError:
        raise
    except NotImplementedError as exc:  # a compression method zipfile does not know
        raise DataError(f"{source}: a zip member cannot be read ({exc})") from None
    # a damaged central directory makes zipfile fail in many ways; all mean "unreadable"
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, ValueError, LookupError) as exc:
        raise DataError(
            f"{source}: not a readable zip archive: {exc}; the file is truncated or corrupt"
        ) from None
