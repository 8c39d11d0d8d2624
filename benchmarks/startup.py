"""Start-up time of the ``spikeshield`` command: ``--version``, ``--help`` and a subcommand's help.

Each command is run as a fresh process ``--repeats`` times (interleaved, after one warm-up run
each so that the files are in the page cache) and the median, min and max wall times are
reported, with the load average before and after. The goal (issue 20): ``--version`` and
``--help`` under 0.3 s, which needs the parser not to import torch or the registries.
Also records which heavy modules each command imported (``-X importtime``): torch must not be
among them for ``--version`` / ``--help``.

    python benchmarks/startup.py --repeats 15 --json results/startup.json

``--exe`` chooses the command (default: the ``spikeshield`` next to this Python).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CASES = {
    "--version": ["--version"],
    "--help": ["--help"],
    "train --help": ["train", "--help"],
}
HEAVY = ("torch", "numpy", "safetensors", "matplotlib")


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else []


def _once(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def heavy_imports(exe: str, args: list[str]) -> list[str]:
    """The HEAVY top-level modules that running ``exe args`` imported."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    proc = subprocess.run([exe, *args], capture_output=True, text=True, env=env, check=True)
    found = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name.split(".")[0] in HEAVY:
                found.add(name.split(".")[0])
    return sorted(found)


def measure(exe: str, repeats: int) -> dict[str, Any]:
    load_before = _load()
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for args in CASES.values():
        _once([exe, *args])  # warm-up: files into the page cache
    for _ in range(repeats):
        for name, args in CASES.items():
            times[name].append(_once([exe, *args]))
    result: dict[str, Any] = {
        "exe": exe,
        "python": platform.python_version(),
        "repeats": repeats,
        "load_average_before": load_before,
        "load_average_after": _load(),
        "logical_cpus": os.cpu_count(),
        "cases": {},
    }
    for name, values in times.items():
        result["cases"][name] = {
            "median_s": statistics.median(values),
            "min_s": min(values),
            "max_s": max(values),
            "seconds": values,
            "heavy_imports": heavy_imports(exe, CASES[name]),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = Path(sys.executable).with_name("spikeshield")
    parser.add_argument("--exe", default=str(default) if default.exists() else shutil.which("spikeshield"))
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args()
    if not args.exe:
        parser.error("no spikeshield command found; pass --exe")
    result = measure(args.exe, args.repeats)
    before, after = result["load_average_before"], result["load_average_after"]
    print(f"{args.exe}; load average before {before}, after {after}")
    for name, case in result["cases"].items():
        heavy = ", ".join(case["heavy_imports"]) or "nothing heavy"
        print(
            f"  spikeshield {name:14s} median {case['median_s']:.3f} s (min {case['min_s']:.3f}, "
            f"max {case['max_s']:.3f}, {args.repeats} runs); imports {heavy}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
