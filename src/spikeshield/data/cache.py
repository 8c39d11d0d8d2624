"""A cache of decoded dataset arrays, outside every data folder.

Decoding 60,000 JPEGs or turning thousands of event recordings into frames takes seconds to
minutes; the result is saved once as an uncompressed ``.npz`` (numpy arrays only, loaded with
``allow_pickle=False``) under :func:`spikeshield.io.cache_dir` and read back in well under a
second. The file name holds two short hashes:

- the *variant*: the dataset name, the decoder version and every option that changes the
  arrays (frame count, split rule, ...), so different options live side by side;
- the *source fingerprint*: the path, size and modification time of every input file, so a
  replaced or edited archive is decoded again.

When a new fingerprint is written, older files of the same variant are deleted. Every write is
atomic (temp file + rename), so a killed process never leaves a half-written cache; a cache
file that cannot be read anyway is ignored and rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import warnings
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from spikeshield.io import OutputError, atomic_write_bytes, cache_dir, ensure_dir, regular_stat

Arrays = dict[str, np.ndarray]


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def source_fingerprint(paths: Iterable[Path]) -> str:
    """A hash of (resolved path, size, mtime in ns) of each file: changes when any file does.

    Raises:
        DataError: a path is not a regular file (a dangling symbolic link, a link loop, a FIFO).
    """
    resolved = {Path(os.path.realpath(p)): Path(p) for p in paths}  # never raises, loops included
    parts = []
    for real in sorted(resolved):
        st = regular_stat(resolved[real], "data file")
        parts.append(f"{real}\0{st.st_size}\0{st.st_mtime_ns}")
    return _short_hash("\n".join(parts))


def variant_key(name: str, version: int, options: dict[str, Any]) -> str:
    """A hash of the decoder version and the options that shape the decoded arrays."""
    return _short_hash(json.dumps({"dataset": name, "version": version, **options}, sort_keys=True))


def _read_npz(path: Path, required: tuple[str, ...], keys: tuple[str, ...] | None) -> Arrays | None:
    """The ``keys`` arrays (all if None) of a cache file, or None if it is unreadable or lacks
    one of ``required``."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if any(k not in npz.files for k in required):
                return None
            return {key: npz[key] for key in npz.files if keys is None or key in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError):
        return None


def cached_arrays(
    name: str,
    version: int,
    options: dict[str, Any],
    sources: Iterable[Path],
    build: Callable[[], Arrays],
    required: Iterable[str] = (),
    keys: Iterable[str] | None = None,
) -> tuple[Arrays, dict[str, Any]]:
    """The arrays ``build()`` returns, from the cache when an up-to-date copy exists.

    ``required``: names a usable cache file must hold; ``keys``: the names to return (default
    all; reading only one split of a cache is faster). Returns ``(arrays, info)`` where
    ``info`` says where the cache file is and whether it was used (``cached``). If the cache
    folder cannot be written the arrays are still returned (with a warning), just not saved.
    """
    variant = variant_key(name, version, options)
    folder = cache_dir() / "datasets"
    path = folder / f"{name}-{variant}-{source_fingerprint(sources)}.npz"
    required = tuple(required)
    wanted = None if keys is None else tuple(keys)
    if path.is_file():
        arrays = _read_npz(path, required, wanted)
        if arrays is not None:
            return arrays, {"cache": str(path), "cached": True}
    arrays = build()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        ensure_dir(folder)
        atomic_write_bytes(path, buffer.getvalue())
    except OutputError as exc:
        warnings.warn(f"{name}: decoded data not cached ({exc})", stacklevel=2)
        return arrays, {"cache": None, "cached": False}
    for stale in folder.glob(f"{name}-{variant}-*.npz"):
        if stale != path:
            with contextlib.suppress(OSError):
                os.unlink(stale)
    return arrays, {"cache": str(path), "cached": False}
