"""Reader for the IDX format of MNIST and Fashion-MNIST (optionally gzip-compressed).

An IDX file is a 4-byte magic number (two zero bytes, the element type, the number of
dimensions N), N big-endian uint32 dimensions, then the elements, row-major, big-endian. The
header is read and checked first: the data it declares is computed with Python integers (no
overflow) and compared with the most the file can hold (its size, or 1032 times its size for a
``.gz``: deflate's largest expansion) before anything is allocated, and a ``.gz`` is inflated as
a stream that stops at the declared size.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from spikeshield.errors import DataError
from spikeshield.io import open_regular

# third byte of the magic number -> numpy dtype (big-endian)
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
UNSIGNED_BYTE = 0x08
DEFLATE_MAX_RATIO = 1032
"""Deflate never expands more than 1032:1 (a 258-byte match per 2 bits)."""


def _read(stream: BinaryIO, count: int, path: Path, what: str) -> bytes:
    data = stream.read(count)
    if len(data) != count:
        raise DataError(f"{path}: {what} cut short after {len(data)} of {count} bytes; the file is truncated")
    return data


def read_idx(path: Path, expected_dims: int | None = None, element_type: int | None = None) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into an array, with a clear error if it is not one.

    Args:
        expected_dims: the number of dimensions the file must have.
        element_type: the IDX type code the file must have (``0x08``: unsigned bytes, as in
            MNIST); None accepts any of the six IDX types.

    Raises:
        DataError: naming the file: missing, not a regular file, not gzip, bad magic number,
            wrong dimensions or element type, or a size that does not match the header.
    """
    with open_regular(path, "IDX file") as fh:
        size = fh.seek(0, 2)
        fh.seek(0)
        try:
            if path.suffix == ".gz":
                with gzip.GzipFile(fileobj=fh) as stream:
                    return _parse(stream, path, DEFLATE_MAX_RATIO * size, expected_dims, element_type)
            return _parse(fh, path, size, expected_dims, element_type)
        except DataError:
            raise
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"{path}: not a readable gzip file ({exc}); expected a gzip-compressed IDX file, "
                "complete and uncorrupted"
            ) from None


def _parse(
    stream: BinaryIO, path: Path, capacity: int, expected_dims: int | None, element_type: int | None
) -> np.ndarray:
    magic = stream.read(4)
    if len(magic) < 4:
        raise DataError(
            f"{path}: only {len(magic)} bytes; expected an IDX file (4-byte magic number, dims, data)"
        )
    zero, dtype_code, ndim = struct.unpack(">HBB", magic)
    if zero != 0 or dtype_code not in _IDX_TYPES or ndim == 0:
        raise DataError(f"{path}: bad IDX magic number {magic.hex()}; expected 0000 08 0N for unsigned bytes")
    dtype = np.dtype(_IDX_TYPES[dtype_code])
    if element_type is not None and dtype_code != element_type:
        wanted = np.dtype(_IDX_TYPES[element_type])
        raise DataError(
            f"{path}: IDX elements are {dtype.name} (type 0x{dtype_code:02X}); this dataset's files "
            f"hold {wanted.name} (0x{element_type:02X})"
        )
    if expected_dims is not None and ndim != expected_dims:
        raise DataError(f"{path}: IDX file has {ndim} dimensions, expected {expected_dims}")
    dims = struct.unpack(f">{ndim}I", _read(stream, 4 * ndim, path, "IDX header"))
    need = math.prod(dims) * dtype.itemsize  # a Python int: never wraps
    if 4 + 4 * ndim + need > capacity:
        raise DataError(
            f"{path}: IDX header says shape {dims} ({need} bytes of data), more than the file can "
            f"hold ({capacity} bytes at most); the file is corrupt"
        )
    data = stream.read(need)
    if len(data) != need or stream.read(1):
        held = f"{len(data)}" if len(data) != need else f"more than {need}"
        raise DataError(
            f"{path}: IDX header says shape {dims} ({need} bytes of data) but the file holds "
            f"{held} bytes; the file is truncated or corrupt"
        )
    return np.frombuffer(data, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))
