"""Start-up time of the ``spikeshield`` command: ``--version``, ``--help`` and a subcommand's help.

Each command is run as a fresh process ``--repeats`` times (interleaved, after one warm-up run
each so that the files are in the page cache) and the median, min and max wall times are
reported, with the load average before and after. The goal (issue 20): ``--version`` and
``--help`` under 0.3 s, which needs the parser not to import torch or the registries.
Also records which heavy modules each command imported (``-X importtime``): torch must not be
among them for ``--version`` / ``--help``.

Before and after, in the same run (the ratio is what counts on a shared machine)::

    python benchmarks/startup.py --before 96ca778 --repeats 15 --json results/startup/startup.json

``--before REV`` exports the ``src/`` of git revision ``REV`` (say, ``main`` before the lazy
start-up was merged) into a temporary folder and times it against this working tree, both run
the same way, as ``python -m spikeshield.cli`` with ``PYTHONPATH`` on that ``src/`` (same
Python, same installed torch), interleaved case by case. Without ``--before`` the installed
command is timed: ``--exe`` (default: the ``spikeshield`` next to this Python).
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
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "--version": ["--version"],
    "--help": ["--help"],
    "train --help": ["train", "--help"],
}
HEAVY = ("torch", "numpy", "safetensors", "matplotlib")


class Variant(NamedTuple):
    """One way of starting the command: its label, the command line before the arguments, and
    the environment variables it runs with."""

    label: str
    command: list[str]
    env: dict[str, str]


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else []


def _run(variant: Variant, args: list[str], **kw: Any) -> subprocess.CompletedProcess:
    env = {**os.environ, **variant.env, **kw.pop("env", {})}
    return subprocess.run([*variant.command, *args], env=env, check=True, **kw)


def _once(variant: Variant, args: list[str]) -> float:
    start = time.perf_counter()
    _run(variant, args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def heavy_imports(variant: Variant, args: list[str]) -> list[str]:
    """The HEAVY top-level modules that running the command with ``args`` imported."""
    proc = _run(variant, args, capture_output=True, text=True, env={"PYTHONPROFILEIMPORTTIME": "1"})
    found = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name.split(".")[0] in HEAVY:
                found.add(name.split(".")[0])
    return sorted(found)


def from_source(label: str, src: Path) -> Variant:
    """The command of the source tree ``src`` (a ``src/`` folder), as ``python -m spikeshield.cli``;
    checks that this Python imports spikeshield from there, not from an installed copy."""
    variant = Variant(label, [sys.executable, "-m", "spikeshield.cli"], {"PYTHONPATH": str(src)})
    where = subprocess.run(
        [sys.executable, "-c", "import spikeshield; print(spikeshield.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **variant.env},
    ).stdout.strip()
    if not Path(where).resolve().is_relative_to(src.resolve()):
        sys.exit(f"{label}: spikeshield imports from {where}, not from {src}")
    return variant


def export_revision(revision: str, into: Path) -> Path:
    """``src/`` of git ``revision`` of this repository, unpacked under ``into``."""
    archive = into / "src.zip"
    subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=zip", "-o", str(archive), revision, "src"], check=True
    )
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(into)
    return into / "src"


def measure(variants: list[Variant], repeats: int) -> dict[str, Any]:
    load_before = _load()
    times = {(v.label, name): [] for v in variants for name in CASES}
    for v in variants:
        for args in CASES.values():
            _once(v, args)  # warm-up: files into the page cache
    for _ in range(repeats):
        for name, args in CASES.items():
            for v in variants:
                times[v.label, name].append(_once(v, args))
    result: dict[str, Any] = {
        "python": platform.python_version(),
        "repeats": repeats,
        "load_average_before": load_before,
        "load_average_after": _load(),
        "logical_cpus": os.cpu_count(),
        "variants": {},
    }
    for v in variants:
        cases = {}
        for name, args in CASES.items():
            values = times[v.label, name]
            cases[name] = {
                "median_s": statistics.median(values),
                "min_s": min(values),
                "max_s": max(values),
                "seconds": values,
                "heavy_imports": heavy_imports(v, args),
            }
        result["variants"][v.label] = {"command": v.command, "env": v.env, "cases": cases}
    return result


def report(result: dict[str, Any]) -> None:
    before, after = result["load_average_before"], result["load_average_after"]
    print(f"load average before {before}, after {after}; {result['repeats']} runs per case")
    variants = result["variants"]
    for label, variant in variants.items():
        print(f"{label}: {' '.join(variant['command'])}")
        for name, case in variant["cases"].items():
            heavy = ", ".join(case["heavy_imports"]) or "nothing heavy"
            print(
                f"  spikeshield {name:14s} median {case['median_s']:.3f} s (min {case['min_s']:.3f}, "
                f"max {case['max_s']:.3f}); imports {heavy}"
            )
    if len(variants) == 2:
        (old, first), (new, second) = variants.items()
        for name in CASES:
            ratio = first["cases"][name]["median_s"] / second["cases"][name]["median_s"]
            print(f"  {name:14s} {old} / {new}: {ratio:.1f}x (median over median)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = Path(sys.executable).with_name("spikeshield")
    parser.add_argument("--exe", default=str(default) if default.exists() else shutil.which("spikeshield"))
    parser.add_argument(
        "--before", metavar="REV", default=None, help="also time git revision REV's src/ (see above)"
    )
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spikeshield-startup-") as tmp:
        if args.before:
            variants = [
                from_source(args.before, export_revision(args.before, Path(tmp))),
                from_source("this tree", ROOT / "src"),
            ]
        elif args.exe:
            variants = [Variant("installed", [args.exe], {})]
        else:
            parser.error("no spikeshield command found; pass --exe or --before")
        result = measure(variants, args.repeats)
    report(result)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
