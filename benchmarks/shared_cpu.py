"""Runs side by side: wall time alone vs beside a second identical run, old vs new threading.

Two jobs, each run as separate ``spikeshield`` processes (the way users fill a machine):

* ``quick`` — the quick job, ``spikeshield run`` (full by default; ``--quick-args`` shrinks it);
* ``mnist`` — one epoch of the MNIST ``cnn`` (LIF, T = 4, batch 128):
  ``spikeshield train --dataset mnist --model cnn --epochs 1``.

Each job is measured under two behaviours:

* ``old`` — PyTorch's defaults, as before the thread policy: one thread per core, idle OpenMP
  threads spinning (``SPIKESHIELD_THREADS=torch``);
* ``new`` — spikeshield's policy (``spikeshield.runtime``): idle threads sleep
  (``OMP_WAIT_POLICY=PASSIVE``), one thread per usable CPU;

and in two settings: ``alone`` (one process) and ``beside`` (two identical processes started
together; both walls are recorded). Every other thread setting (``OMP_NUM_THREADS``,
``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``, ``SPIKESHIELD_THREADS``...) is removed from the
children's environment. Measurements are interleaved (job by job, old then new) and repeated
``--repeats`` times; the JSON keeps every wall time and reports medians and the ratios

* ``beside / alone`` per behaviour (goal for ``new``: at most ~1.3), and
* ``new alone / old alone`` (goal: at most 1.05).

Further behaviours can be added for comparison, each as NAME=VAR=VALUE[,VAR=VALUE...], e.g.
``--extra one-thread=OMP_NUM_THREADS=1 short-spin=GOMP_SPINCOUNT=30000``.

Run it on an otherwise idle machine; ``uptime`` is recorded before and after::

    python benchmarks/shared_cpu.py --data-root ../shared/data --out results/shared_cpu

Small smoke test (not a measurement)::

    python benchmarks/shared_cpu.py --data-root ../shared/data --out /tmp/shared_cpu --tiny
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from spikeshield.io import atomic_write_json, atomic_write_text
from spikeshield.runtime import usable_cpus

BEHAVIOURS = {"old": {"SPIKESHIELD_THREADS": "torch"}, "new": {}}
NOTES = {
    "old": "SPIKESHIELD_THREADS=torch: PyTorch's defaults (one thread per core, idle threads spin)",
    "new": "spikeshield's policy: OMP_WAIT_POLICY=PASSIVE set at start-up, one thread per usable CPU",
}
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "KMP_BLOCKTIME",
    "MKL_NUM_THREADS",
    "SPIKESHIELD_THREADS",
    "SPIKESHIELD_KERNEL_THREADS",
)
TINY = {
    "quick": ["--epochs", "1", "--sigmas", "0", "0.2", "--eps", "0", "0.1", "--steps", "2"],
    "mnist": ["--limit-train", "1024", "--limit-test", "256"],
}


def job_commands(args: argparse.Namespace) -> dict[str, list[str]]:
    cli = [sys.executable, "-m", "spikeshield.cli"]
    data = ["--data-root", args.data_root] if args.data_root else []
    quick = [*cli, "run", *shlex.split(args.quick_args)]
    mnist = [*cli, "train", "--dataset", "mnist", "--model", "cnn", "--epochs", "1", *data]
    mnist += shlex.split(args.mnist_args)
    if args.tiny:
        quick, mnist = quick + TINY["quick"], mnist + TINY["mnist"]
    return {name: cmd for name, cmd in (("quick", quick), ("mnist", mnist)) if name in args.jobs}


def parse_extra(items: list[str]) -> dict[str, dict[str, str]]:
    """``NAME=VAR=VALUE[,VAR=VALUE]`` items as {NAME: {VAR: VALUE}}."""
    extra = {}
    for item in items:
        name, _, assignments = item.partition("=")
        pairs = [a.partition("=") for a in assignments.split(",") if a]
        if not name or not pairs or any(not var or not eq for var, eq, _ in pairs):
            raise SystemExit(f"shared_cpu: --extra takes NAME=VAR=VALUE[,VAR=VALUE], got {item!r}")
        extra[name] = {var: value for var, _, value in pairs}
    return extra


def child_env(settings: dict[str, str], cache: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env.update(settings, SPIKESHIELD_PROGRESS="0")
    if cache:
        env["SPIKESHIELD_CACHE"] = cache
    return env


def run_together(command: list[str], copies: int, env: dict[str, str], scratch: Path) -> list[float]:
    """Start ``copies`` processes of ``command`` at once (each with its own --out); their wall times."""
    procs = []
    for _ in range(copies):
        out = tempfile.mkdtemp(dir=scratch)
        log = open(Path(out) / "log.txt", "w")  # noqa: SIM115 - closed below
        start = time.perf_counter()
        proc = subprocess.Popen([*command, "--out", str(Path(out) / "run")], env=env, stdout=log, stderr=log)
        procs.append((proc, start, log, out))
    walls = []
    for proc, start, log, out in procs:
        code = proc.wait()
        walls.append(time.perf_counter() - start)
        log.close()
        if code != 0:
            tail = (Path(out) / "log.txt").read_text()[-2000:]
            raise SystemExit(f"shared_cpu: {shlex.join(command)} failed with exit code {code}:\n{tail}")
    return walls


def summarise(walls: dict[str, dict[str, dict[str, list[float]]]]) -> dict[str, Any]:
    """Medians and the ratios the goal is stated in, per job."""
    summary: dict[str, Any] = {}
    for job, by_behaviour in walls.items():
        med = {
            b: {setting: statistics.median(values) for setting, values in settings.items()}
            for b, settings in by_behaviour.items()
        }
        summary[job] = {
            "median_seconds": med,
            "beside_over_alone": {b: m["beside"] / m["alone"] for b, m in med.items()},
        }
        for b in med.keys() - {"old"}:
            summary[job][f"{b}_alone_over_old_alone"] = med[b]["alone"] / med["old"]["alone"]
    return summary


def load() -> list[float] | None:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def warm_up(env: dict[str, str]) -> None:
    """Build the C kernels into the cache first, so no measured run pays the compile."""
    code = "from spikeshield.kernels import cpu; assert cpu.library() is not None, cpu.unavailable_reason()"
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", default=None, help="folder holding MNIST (default: $SPIKESHIELD_DATA)")
    parser.add_argument(
        "--out", default="results/shared_cpu", help="folder for shared_cpu.json and command.txt"
    )
    parser.add_argument("--jobs", nargs="+", choices=("quick", "mnist"), default=["quick", "mnist"])
    parser.add_argument("--repeats", type=int, default=1, help="measurements of each cell (default 1)")
    parser.add_argument("--quick-args", default="", help="extra arguments for 'spikeshield run' (shrinks it)")
    parser.add_argument("--mnist-args", default="", help="extra arguments for the MNIST 'spikeshield train'")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a smoke test of this script")
    parser.add_argument(
        "--extra",
        nargs="+",
        default=[],
        metavar="NAME=VAR=VALUE",
        help="more behaviours to compare (see above)",
    )
    parser.add_argument(
        "--cache", default=None, help="SPIKESHIELD_CACHE for the children (default: inherited)"
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    commands = job_commands(args)
    behaviours = {**BEHAVIOURS, **parse_extra(args.extra)}
    warm_up(child_env(BEHAVIOURS["new"], args.cache))
    walls: dict[str, dict[str, dict[str, list[float]]]] = {
        job: {b: {"alone": [], "beside": []} for b in behaviours} for job in commands
    }
    load_before = load()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="shared-cpu-") as scratch:
        for repeat in range(args.repeats):
            for job, command in commands.items():
                for behaviour, settings in behaviours.items():
                    env = child_env(settings, args.cache)
                    alone = run_together(command, 1, env, Path(scratch))
                    beside = run_together(command, 2, env, Path(scratch))
                    walls[job][behaviour]["alone"] += alone
                    walls[job][behaviour]["beside"] += beside
                    print(
                        f"[{repeat + 1}/{args.repeats}] {job:5s} {behaviour}: alone {alone[0]:7.1f}s, "
                        f"beside {beside[0]:7.1f}s / {beside[1]:7.1f}s (load {load()})",
                        flush=True,
                    )
    summary = summarise(walls)
    record = {
        "summary": summary,
        "walls_seconds": walls,
        "commands": {job: shlex.join(cmd) for job, cmd in commands.items()},
        "behaviours": {**NOTES, **{b: str(v) for b, v in behaviours.items() if b not in NOTES}},
        "environment": {
            "machine": platform.machine(),
            "usable_cpus": usable_cpus(),
            "python": platform.python_version(),
            "load_average_before": load_before,
            "load_average_after": load(),
            "total_seconds": round(time.time() - started, 1),
            "tiny": args.tiny,
        },
    }
    atomic_write_json(out / "shared_cpu.json", record)
    atomic_write_text(out / "command.txt", shlex.join(["python", *sys.argv]) + "\n")
    for job, s in summary.items():
        ratios = ", ".join(f"{b} {r:.2f}" for b, r in s["beside_over_alone"].items())
        suffix = "_alone_over_old_alone"
        versus = ", ".join(f"{k[: -len(suffix)]} {v:.2f}" for k, v in s.items() if k.endswith(suffix))
        print(f"{job}: beside / alone: {ratios}; alone / old alone: {versus}")
    print(f"wrote {out / 'shared_cpu.json'}")


if __name__ == "__main__":
    main()
