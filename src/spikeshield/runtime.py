"""Process-level tuning for long CPU runs.

glibc returns every large freed block to the OS and maps a fresh one for the next large
tensor, so each new activation tensor pays its page faults again; on these 2-core machines
that costs more than the arithmetic (see ``docs/performance.md``). :func:`tune_allocator`
keeps large blocks in the heap instead — the same effect as starting Python with
``MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=17179869184`` — at the price of
the process keeping its peak memory until it exits. The CLI calls it; library users may.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_tuned = False


def tune_allocator() -> bool:
    """Keep large freed blocks for reuse (glibc only). Returns True if applied.

    Set ``SPIKESHIELD_TUNE_MALLOC=0`` to leave the allocator alone.
    """
    global _tuned
    if _tuned:
        return True
    if os.environ.get("SPIKESHIELD_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))
    _tuned = ok
    return ok
