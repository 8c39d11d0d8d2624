"""Install and run spikeshield the way users do (issue 20); run by .ci/run.

``python -m build`` makes the sdist and, from it, the wheel. The wheel goes into a fresh virtual
environment outside the source tree (the CPU torch wheel first, as the README says, so nothing
pulls a CUDA build; then the wheel with its dependencies), and the installed command runs there
in an empty folder with an empty cache:

* ``--version`` (also as ``python -m spikeshield``, and in a second environment without torch,
  where it must be one line and a command one line of error), ``neurons``;
* a tiny digits training and a tiny evaluation: every "wrote X" names a file that exists, the
  figures are said to be skipped (matplotlib is not installed there), ``metrics.json`` records
  the fused C kernel for every neuron;
* the fallbacks: ``SPIKESHIELD_CACHE=/dev/null`` and no C compiler on PATH each give one warning,
  and the run completes on the reference loop, as its record says.

Usage: ``python .ci/install_check.py [--keep DIR]`` (with ``--keep`` the dists and the
environments stay in DIR). Takes about a minute, most of it installing torch's wheel.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "digits", "--model", "cnn", "--neuron", "lif", "--time-steps", "2", "--epochs", "1"]
TINY += ["--limit-train", "200", "--limit-test", "100"]
HINT = "matplotlib is not installed (pip install 'spikeshield[plot]')"


def sh(*args: str | Path, check: bool = True, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    if check and done.returncode != 0:
        command = " ".join(map(str, args))
        sys.exit(f"FAILED ({done.returncode}): {command}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done


def build(out: Path) -> tuple[Path, Path]:
    sh(sys.executable, "-m", "build", "--outdir", out, ROOT)
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    for dist in (wheel, sdist):
        print(
            f"built {dist.name}: {dist.stat().st_size / 1024:.0f} KiB ({time.perf_counter() - STARTED:.0f}s)"
        )
    return wheel, sdist


def venv(path: Path, *installs: list[str]) -> Path:
    sh(sys.executable, "-m", "venv", path)
    for args in installs:
        sh(path / "bin" / "python", "-m", "pip", "install", "-q", *args)
    return path / "bin"


def wrote(printed: str) -> list[Path]:
    lines = [line.removeprefix("wrote ") for line in printed.splitlines() if line.startswith("wrote ")]
    return [Path(p) for line in lines for p in re.sub(r" \([^()]*\)$", "", line).split(", ")]


STARTED = time.perf_counter()


def check(condition: bool, what: str, detail: str = "") -> None:
    if not condition:
        sys.exit(f"FAILED: {what}\n{detail[-3000:]}")
    print(f"ok: {what} ({time.perf_counter() - STARTED:.0f}s)")


def one_warning(done: subprocess.CompletedProcess, reason: str) -> None:
    lines = [line for line in done.stderr.splitlines() if "warning" in line.lower()]
    check(
        len(lines) == 1 and lines[0].startswith("spikeshield: warning: fused CPU") and reason in lines[0],
        f"one warning: {reason}",
        done.stderr,
    )


def kernels_record(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())["environment"]["kernels"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", metavar="DIR", default=None)
    keep = parser.parse_args().keep
    work = Path(keep or tempfile.mkdtemp(prefix="spikeshield-install-"))
    try:
        wheel, _ = build(work / "dist")
        bin_ = venv(work / "venv", ["torch==2.13.0"], [str(wheel)])
        exe, python = bin_ / "spikeshield", bin_ / "python"
        here = work / "user"
        here.mkdir()
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("SPIKESHIELD_", "PYTHON", "VIRTUAL_ENV"))
        }
        env.update(OMP_NUM_THREADS="1", SPIKESHIELD_PROGRESS="0", SPIKESHIELD_CACHE=str(work / "cache"))
        env["PATH"] = f"{bin_}{os.pathsep}{env.get('PATH', '')}"
        run = {"cwd": here, "env": env}

        version = sh(exe, "--version", **run).stdout
        check(
            re.fullmatch(r"spikeshield \d+\.\d+\.\d+\S*\n", version) is not None,
            f"--version: {version.strip()}",
        )
        check(sh(python, "-m", "spikeshield", "--version", **run).stdout == version, "python -m spikeshield")
        location = sh(python, "-c", "import spikeshield; print(spikeshield.__file__)", **run).stdout
        check(str(work / "venv") in location and str(ROOT) not in location, "imports the installed package")
        check("linear-lif" in sh(exe, "neurons", **run).stdout, "neurons")

        trained = sh(exe, "train", *TINY, "--out", "r", **run)
        record = kernels_record(here / "r")
        check(
            all(set(n) == {"fused-c"} for n in record["neurons"].values()) and record["neurons"],
            "the fused C kernel built into the user cache and ran every neuron",
            trained.stderr,
        )
        check(
            not list((work / "venv").rglob("spikeshield_kernels_*.so")), "nothing compiled into site-packages"
        )
        evaluated = sh(exe, "evaluate", "--run", "r", "--attack", "fgsm", "pgd", "--eps", "0", "0.1",
                       "--steps", "2", "--limit", "50", "--check-samples", "20", **run)  # fmt: skip
        files = [here / f for f in wrote(evaluated.stdout)]
        check(
            bool(files) and all(f.is_file() for f in files),
            "every 'wrote X' of evaluate exists",
            evaluated.stdout,
        )
        check(f"skipped the accuracy curves (PNG): {HINT}" in evaluated.stdout, "skipped figures said")

        for name, extra, reason in (
            ("unwritable cache", {"SPIKESHIELD_CACHE": "/dev/null"}, "the kernel cache is not writable"),
            (
                "no C compiler",
                {"PATH": str(bin_), "SPIKESHIELD_CACHE": str(work / "cache2")},
                "no C compiler",
            ),
        ):
            out = here / name.replace(" ", "-")
            done = sh(exe, "train", *TINY, "--out", out, cwd=here, env={**env, **extra})
            one_warning(done, reason)
            record = kernels_record(out)
            check(
                all(set(n) == {"reference"} for n in record["neurons"].values()),
                f"{name}: reference loop ran",
            )

        bare = venv(work / "bare", ["--no-deps", str(wheel)])
        done = sh(bare / "spikeshield", "--version", cwd=here, env=env)
        check(done.stdout == version and done.stderr == "", "--version without torch: one line")
        done = sh(bare / "spikeshield", "neurons", cwd=here, env=env, check=False)
        lines = done.stderr.strip().splitlines()
        check(
            done.returncode == 1 and len(lines) == 1 and "'torch' is not installed" in lines[0],
            "a command without torch: one line of error",
            done.stderr,
        )
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"install check: {time.perf_counter() - STARTED:.0f}s")


if __name__ == "__main__":
    main()
