"""Reader for the IDX format of MNIST and Fashion-MNIST (optionally gzip-compressed)."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from spikeshield.errors import DataError

# third byte of the magic number -> numpy dtype (big-endian)
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path, expected_dims: int | None = None) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into an array, with a clear error if it is not one."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path}: not a readable gzip file ({exc}); expected a gzip-compressed IDX file"
        ) from None
    if len(raw) < 4:
        raise DataError(
            f"{path}: only {len(raw)} bytes; expected an IDX file (4-byte magic number, dims, data)"
        )
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code not in _IDX_TYPES or ndim == 0:
        raise DataError(
            f"{path}: bad IDX magic number {raw[:4].hex()}; expected 0000 08 0N for unsigned bytes"
        )
    if expected_dims is not None and ndim != expected_dims:
        raise DataError(f"{path}: IDX file has {ndim} dimensions, expected {expected_dims}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[dtype_code])
    need = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != need:
        raise DataError(
            f"{path}: IDX header says shape {dims} ({need} bytes of data) but the file holds "
            f"{len(raw) - header} bytes; the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))
