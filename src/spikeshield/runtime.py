"""Process-level CPU settings: how many threads, how idle threads wait, and the allocator.

**Threads.** PyTorch's CPU pool (OpenMP) busy-waits ("spins") between parallel regions by
default. Two processes that each spin on every core steal the cores the other is computing on:
two trainings side by side took 2–3× as long as one alone (``docs/performance.md``). spikeshield
therefore

1. makes idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``) —
   :func:`prepare_process`, run by ``import spikeshield``. OpenMP reads that variable once, when
   it loads with ``import torch``, so it takes effect where spikeshield is imported first: the
   ``spikeshield`` command, its worker processes, the benchmarks, and scripts that
   ``import spikeshield`` before ``torch``;
2. gives the process one thread per CPU it may use — its affinity mask (``taskset``), capped by a
   cgroup CPU quota (containers) — :func:`configure_threads`, run by every CLI command and by
   ``train`` / ``evaluate_robustness``. The fused C kernels use the same count
   (``torch.get_num_threads()``) with threads that exit after each call; data loading runs in
   the same process and pool. No other thread pool is started.

An explicit choice always wins: ``--threads N`` / ``configure_threads(N)``, then
``SPIKESHIELD_THREADS=N``, then ``OMP_NUM_THREADS``, then a ``torch.set_num_threads`` made
before spikeshield's call; ``OMP_WAIT_POLICY`` / ``GOMP_SPINCOUNT`` / ``KMP_BLOCKTIME`` set by the
user are left alone. ``SPIKESHIELD_THREADS=torch`` leaves both to PyTorch (the behaviour before
this policy). Where torch was imported before spikeshield without a wait policy, OpenMP spins and
nothing can change that any more: :func:`configure_threads` then leaves out the CPUs that other
processes keep busy at that moment (and says so once), so a second run started beside a first
does not oversubscribe the cores.

**Allocator.** glibc returns every large freed block to the OS and maps a fresh one for the
next large tensor, so each new activation tensor pays its page faults again; on these 2-core
machines that costs more than the arithmetic. :func:`tune_allocator` keeps large blocks in the
heap instead — the same effect as starting Python with
``MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=17179869184`` — at the price of the
process keeping its peak memory until it exits. The CLI calls it; library users may.

This module imports nothing heavy at import time (``import spikeshield`` runs it before torch).
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

#: ``N`` (threads), ``auto`` (default) or ``torch`` (leave threads and wait policy to PyTorch)
THREADS_ENV = "SPIKESHIELD_THREADS"
#: variables by which a user chooses how OpenMP threads wait (left alone when set)
WAIT_ENV = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_tuned = False

#: how OpenMP waits in this process, decided once by prepare_process()
_wait: dict[str, Any] | None = None
#: torch's own count when spikeshield first looked; the count configure_threads() set last, and why
_baseline: int | None = None
_applied: int | None = None
_source: str | None = None
_warned = False


# ----------------------------------------------------------------------------- wait policy
def openmp_loaded() -> bool:
    """True when an OpenMP runtime is already loaded in this process (its wait policy is fixed)."""
    try:
        maps = Path("/proc/self/maps").read_text(errors="replace")
    except OSError:
        return "torch" in sys.modules
    return any(name in maps for name in ("libgomp", "libiomp", "libomp"))


def prepare_process() -> dict[str, Any]:
    """Let idle OpenMP threads sleep (``OMP_WAIT_POLICY=PASSIVE``) if OpenMP has not loaded yet.

    Does nothing where the user chose a wait policy (:data:`WAIT_ENV`) or set
    ``SPIKESHIELD_THREADS=torch``. Returns (and remembers) ``{"wait_policy", "set_by"}``: the
    policy OpenMP runs with in this process — ``passive``, ``active``, or ``spin`` (OpenMP's
    default: spin, then sleep) — and who chose it.
    """
    global _wait
    if _wait is not None:
        return _wait
    chosen = {k: os.environ[k] for k in WAIT_ENV if os.environ.get(k)}
    if chosen:
        _wait = {
            "wait_policy": _describe(chosen),
            "set_by": "user: " + ", ".join(f"{k}={v}" for k, v in chosen.items()),
        }
    elif openmp_loaded():
        _wait = {"wait_policy": "spin", "set_by": "OpenMP's default (torch was imported before spikeshield)"}
    elif os.environ.get(THREADS_ENV, "").strip().lower() == "torch":
        _wait = {"wait_policy": "spin", "set_by": f"OpenMP's default ({THREADS_ENV}=torch)"}
    else:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        _wait = {"wait_policy": "passive", "set_by": "spikeshield"}
    return _wait


def _describe(chosen: dict[str, str]) -> str:
    policy = chosen.get("OMP_WAIT_POLICY", "").strip().lower()
    if policy in ("passive", "active"):
        return policy
    if chosen.get("GOMP_SPINCOUNT", "").strip() == "0" or chosen.get("KMP_BLOCKTIME", "").strip() == "0":
        return "passive"
    return "spin"


def spin_waiting() -> bool:
    """True when idle OpenMP threads of this process busy-wait (a shared CPU then suffers)."""
    return prepare_process()["wait_policy"] != "passive"


# ----------------------------------------------------------------------------- thread count
def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(count, quota) if quota else count)


def _cgroup_quota() -> int | None:
    try:
        fields = Path("/sys/fs/cgroup/cpu.max").read_text().split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        return max(1, math.ceil(int(fields[0]) / int(fields[1])))
    except (ValueError, ZeroDivisionError):
        return None


def _positive(value: Any, what: str) -> int:
    from spikeshield import validate
    from spikeshield.errors import UsageError

    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise UsageError(f"{what} must be a positive integer, 'auto' or 'torch', got {value!r}") from None
    return validate.positive_int(what, value)


def _choice(threads: int | None, current: int) -> tuple[int | None, str]:
    """An explicit or user choice as ``(threads, source)``; ``(None, "automatic")`` if there is none."""
    if threads is not None:
        return _positive(threads, "threads"), "explicit"
    if _source == "explicit" and current == _applied:  # --threads, or a worker's share: kept
        return current, "explicit"
    env = os.environ.get(THREADS_ENV, "").strip().lower()
    if env == "torch":
        return current, f"{THREADS_ENV}=torch"
    if env not in ("", "auto"):
        return _positive(env, THREADS_ENV), THREADS_ENV
    if _applied is not None and current != _applied:
        return current, "torch.set_num_threads"
    if _applied is not None and _source != "automatic":
        return current, _source or "explicit"
    if os.environ.get("OMP_NUM_THREADS"):
        return current, "OMP_NUM_THREADS"
    return None, "automatic"


def configure_threads(threads: int | None = None) -> int:
    """Set this process's CPU threads (PyTorch's intra-op pool and the fused kernels); return the count.

    Args:
        threads: the count to use (``--threads``, or a worker's share from
            :func:`threads_per_job`). ``None``: keep an explicit choice made earlier
            (a ``threads`` argument given to an earlier call, ``SPIKESHIELD_THREADS``,
            ``OMP_NUM_THREADS``, ``torch.set_num_threads``), else one
            thread per usable CPU (:func:`usable_cpus`), never more than PyTorch's own default
            (which counts physical cores), and fewer where OpenMP spins (:func:`spin_waiting`)
            and other processes keep CPUs busy right now.

    Raises:
        UsageError: ``threads`` (or ``SPIKESHIELD_THREADS``) is not a positive integer.
    """
    global _applied, _baseline, _source
    prepare_process()
    import torch

    current = torch.get_num_threads()
    if _baseline is None:
        _baseline = current
    chosen, source = _choice(threads, current)
    if chosen is None:
        chosen = min(usable_cpus(), _baseline)
        if spin_waiting() and chosen > 1:
            chosen = _leave_busy_cpus(chosen)
    if chosen != current:
        torch.set_num_threads(chosen)
    _applied, _source = chosen, source
    return chosen


def positive_count(text: str) -> int:
    """A count flag (``--threads N``, ``--jobs N``, ``--repeats N``) read as an ``argparse``
    ``type``: N, or an error naming the bad value (argparse names the flag: ``argument --threads:
    must be a positive integer, got '0'``), so that a bad value is refused before any work
    (``--dry-run`` included)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def threads_per_job(jobs: int) -> int:
    """Threads for each of ``jobs`` worker processes sharing this machine (at least 1 each):
    the explicit choice (``SPIKESHIELD_THREADS``, ``OMP_NUM_THREADS``) or the usable CPUs, divided."""
    jobs = _positive(jobs, "jobs")
    total = usable_cpus()
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip().split(",")[0]
        if value.isdigit() and int(value) > 0:
            total = int(value)
            break
    return max(1, total // jobs)


def thread_settings() -> dict[str, Any]:
    """What this process runs with, for run records: threads, their source, the wait policy."""
    import torch

    return {
        "threads": torch.get_num_threads(),
        "threads_source": _source or "not configured by spikeshield",
        "usable_cpus": usable_cpus(),
        **prepare_process(),
    }


def _leave_busy_cpus(threads: int) -> int:
    """``threads`` minus the threads other processes are running now (at least 1), with a warning."""
    global _warned
    busy = _running_elsewhere()
    if busy <= 0:
        return threads
    chosen = max(1, threads - busy)
    if not _warned:
        _warned = True
        warnings.warn(
            f"spikeshield: OpenMP threads in this process spin while they wait (torch was imported before "
            f"spikeshield without OMP_WAIT_POLICY) and {busy} other thread(s) are running, so this process "
            f"uses {chosen} thread(s) instead of {threads}. Import spikeshield before torch or set "
            "OMP_WAIT_POLICY=PASSIVE to share CPUs without this (see docs/performance.md).",
            RuntimeWarning,
            stacklevel=3,
        )
    return chosen


def _running_elsewhere(samples: int = 5, pause: float = 0.01) -> int:
    """Threads of other processes running right now (median of a few looks at /proc); 0 if unknown."""
    counts = []
    for _ in range(samples):
        try:
            total = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
            own = sum(1 for stat in Path("/proc/self/task").glob("*/stat") if _thread_running(stat))
        except (OSError, ValueError, IndexError):
            return 0
        counts.append(max(0, total - own))
        time.sleep(pause)
    return sorted(counts)[len(counts) // 2]


def _thread_running(stat: Path) -> bool:
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] == "R"
    except (OSError, IndexError):
        return False


# ----------------------------------------------------------------------------- allocator
def tune_allocator() -> bool:
    """Keep large freed blocks for reuse (glibc only). Returns True if applied.

    Set ``SPIKESHIELD_TUNE_MALLOC=0`` to leave the allocator alone.
    """
    global _tuned
    if _tuned:
        return True
    if os.environ.get("SPIKESHIELD_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    import ctypes  # here, not at the top: ``import spikeshield`` stays fast (spikeshield --help)
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))
    _tuned = ok
    return ok


__all__ = [
    "THREADS_ENV",
    "configure_threads",
    "openmp_loaded",
    "prepare_process",
    "spin_waiting",
    "thread_settings",
    "threads_per_job",
    "tune_allocator",
    "usable_cpus",
]
