"""Whatever stops the fused CPU kernels, a run completes on the reference loop (issue 20).

An unwritable cache (``SPIKESHIELD_CACHE=/dev/null``, a read-only home) and a machine without a C
compiler each give one warning, the run finishes, and ``metrics.json`` records that the reference
loop ran every neuron and why. Each case is the ``spikeshield`` command in a fresh process, as a
user meets it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from spikeshield import kernels
from spikeshield.kernels import cpu
from spikeshield.models import build_model

TINY = ["--dataset", "digits", "--model", "cnn", "--neuron", "lif", "--time-steps", "2", "--epochs", "1"]
TINY += ["--limit-train", "64", "--limit-test", "32", "--batch-size", "32", "--device", "cpu"]
SCRUBBED = ("SPIKESHIELD_CACHE", "XDG_CACHE_HOME", "SPIKESHIELD_CC", "CC", "SPIKESHIELD_KERNELS")


def train(out: Path, env: dict[str, str], prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    command = [*(prefix or []), sys.executable, "-m", "spikeshield", "train", *TINY, "--out", str(out)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env={**base, **env})


def assert_reference_run(done: subprocess.CompletedProcess, out: Path, reason: str) -> None:
    assert done.returncode == 0, done.stderr[-3000:]
    warnings = [line for line in done.stderr.splitlines() if "warning" in line.lower()]
    assert len(warnings) == 1, done.stderr
    assert warnings[0].startswith("spikeshield: warning: fused CPU neuron kernels unavailable (")
    assert reason in warnings[0] and "using the reference loop" in warnings[0]
    assert "Traceback" not in done.stderr
    record = json.loads((out / "metrics.json").read_text())["environment"]["kernels"]
    assert record["neurons"] and all(set(n) == {"reference"} for n in record["neurons"].values()), record
    assert reason in record["cpu_kernels_unavailable"]
    assert (out / "model.safetensors").is_file()


def test_cache_is_a_file(tmp_path):
    done = train(tmp_path / "run", {"SPIKESHIELD_CACHE": "/dev/null"})
    assert_reference_run(done, tmp_path / "run", "the kernel cache is not writable")
    assert "set SPIKESHIELD_CACHE to a writable folder" in done.stderr


@contextlib.contextmanager
def read_only_home() -> Iterator[tuple[Path, list[str]]]:
    """A home folder this process cannot write: ``(home, command prefix)``. As root (who may write
    anywhere the modes forbid) it is a read-only bind mount in a private mount namespace."""
    home = Path(tempfile.mkdtemp(prefix="spikeshield-ro-home-"))
    try:
        if os.geteuid() != 0:
            home.chmod(0o555)
            yield home, []
            return
        unshare = shutil.which("unshare")
        script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
        prefix = [unshare or "unshare", "--mount", "sh", "-c", script, str(home)]
        probe = subprocess.run([*prefix, "touch", str(home / "probe")], capture_output=True, text=True)
        if unshare is None or "Read-only file system" not in probe.stderr:
            pytest.skip(f"as root, and cannot mount a read-only folder here: {probe.stderr.strip()}")
        yield home, prefix
    finally:
        home.chmod(0o755)
        shutil.rmtree(home, ignore_errors=True)


def test_read_only_home(tmp_path):
    with read_only_home() as (home, prefix):
        done = train(tmp_path / "run", {"HOME": str(home)}, prefix)
        assert not (home / ".cache").exists()
    assert_reference_run(done, tmp_path / "run", "the kernel cache is not writable")


def test_no_c_compiler(tmp_path):
    """Only this Python's own folder on PATH: no ``cc``, ``gcc`` or ``clang`` to find."""
    env = {"PATH": str(Path(sys.executable).parent), "SPIKESHIELD_CACHE": str(tmp_path / "cache")}
    done = train(tmp_path / "run", env)
    assert_reference_run(done, tmp_path / "run", "no C compiler found")
    assert not (tmp_path / "cache" / "kernels").exists()


def test_the_record_counts_what_ran_each_neuron():
    assert cpu.library() is not None, "this test needs the fused kernels (a C compiler)"
    model = build_model("cnn", neuron="lif", input_shape=(1, 8, 8), time_steps=2)
    before = kernels.backends_used(model)["neurons"]  # building may have run a shape probe
    assert set(before) == {"body.0", "body.2"}  # the model's two spiking neurons
    model(torch.rand(3, 1, 8, 8))
    with kernels.reference_only():
        model(torch.rand(3, 1, 8, 8))
        model(torch.rand(3, 1, 8, 8))
    after = kernels.backends_used(model)
    assert after["cpu_kernels_unavailable"] is None
    for name, counts in after["neurons"].items():
        added = {k: v - before[name].get(k, 0) for k, v in counts.items()}
        assert {k: v for k, v in added.items() if v} == {"fused-c": 1, "reference": 2}, name
