"""Where a result was measured: one record written by training and by every evaluation.

Timings and, on GPUs, some figures depend on the machine and on its load at the time, so every
``metrics.json``, ``robustness.json`` and experiment summary carries :func:`environment`.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

import spikeshield
from spikeshield.runtime import prepare_process, usable_cpus


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """CPUs this process may run on: its affinity mask (``taskset``), capped by a cgroup CPU quota
    (containers); see :func:`spikeshield.runtime.usable_cpus`."""
    return usable_cpus()


def source_commit() -> str | None:
    """The git commit of the spikeshield source in use (``+dirty`` if modified), if it is a checkout."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no", "--", str(here.parent)],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def environment(device: str | torch.device | None = None) -> dict[str, Any]:
    """Versions, source commit, CPU / GPU, torch threads and the load average at the call.

    ``device``: the device the work runs on (recorded with its GPU name when it is CUDA).
    """
    env: dict[str, Any] = {
        "spikeshield": spikeshield.__version__,
        "source_commit": source_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cores": usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": prepare_process()["wait_policy"],
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    if device is not None:
        device = torch.device(device)
        env["device"] = str(device)
        if device.type == "cuda":
            env["gpu"] = torch.cuda.get_device_name(device)
    if hasattr(os, "getloadavg"):
        env["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
    return env
