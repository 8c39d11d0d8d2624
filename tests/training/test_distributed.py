"""Data-parallel training with two CPU processes on the gloo backend, launched by torchrun."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from spikeshield.io import read_json
from spikeshield.training.checkpoint import load_tensors

ARGS = ["train", "--dataset", "digits", "--model", "mlp", "--model-opt", "hidden=[64]", "--time-steps", "2",
        "--epochs", "3", "--batch-size", "64", "--seed", "0", "--device", "cpu"]  # fmt: skip


def torchrun(out, *extra, wait=True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "spikeshield.cli", *ARGS, "--out", str(out), *extra]  # fmt: skip
    env = dict(os.environ, SPIKESHIELD_PROGRESS="0")
    if not wait:
        return subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def why(proc: subprocess.CompletedProcess) -> str:
    """What a failed torchrun said: its workers' own error lines first (the launcher's summary
    at the end of stderr hides them), then the tail."""
    lines = [line for line in proc.stderr.splitlines() if any(k in line for k in
             ("Error", "error:", "terminate", "what()", "Exception", "Traceback"))]  # fmt: skip
    return "\n".join(lines[:40]) + "\n...\n" + proc.stderr[-1500:]


def test_two_processes_match_one_within_noise_and_only_rank0_writes(tmp_path):
    two = torchrun(tmp_path / "ddp")
    assert two.returncode == 0, why(two)
    assert two.stdout.count("test accuracy") == 1  # only rank 0 reports
    one = subprocess.run([sys.executable, "-m", "spikeshield.cli", *ARGS, "--out", str(tmp_path / "single")],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert one.returncode == 0, one.stderr
    m2, m1 = read_json(tmp_path / "ddp" / "metrics.json"), read_json(tmp_path / "single" / "metrics.json")
    assert m2["environment"]["world_size"] == 2 and m1["environment"]["world_size"] == 1
    assert m2["train_samples"] == m1["train_samples"] == 1438
    assert abs(m2["test_accuracy"] - m1["test_accuracy"]) < 0.05, (m2["test_accuracy"], m1["test_accuracy"])
    assert m2["test_accuracy"] > 0.8
    names = sorted(p.name for p in (tmp_path / "ddp").iterdir())
    assert names == ["checkpoint.safetensors", "config.json", "metrics.json", "model.safetensors"]


def test_two_process_run_killed_and_resumed_equals_uninterrupted(tmp_path):
    proc = torchrun(tmp_path / "cut", wait=False)
    ckpt = tmp_path / "cut" / "checkpoint.safetensors"
    start = time.monotonic()
    while not ckpt.exists():
        if proc.poll() is not None or time.monotonic() - start > 240:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("no checkpoint appeared")
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers
    proc.wait()
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    resumed = torchrun(tmp_path / "cut", "--resume")
    assert resumed.returncode == 0, why(resumed)
    full = torchrun(tmp_path / "full")
    assert full.returncode == 0, why(full)
    a, _ = load_tensors(tmp_path / "full" / "model.safetensors")
    b, _ = load_tensors(tmp_path / "cut" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (
        read_json(tmp_path / "cut" / "metrics.json")["test_accuracy"]
        == read_json(tmp_path / "full" / "metrics.json")["test_accuracy"]
    )
