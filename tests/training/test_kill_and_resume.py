"""A training process killed with SIGKILL at an arbitrary moment resumes to the same result."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from spikeshield.io import read_json
from spikeshield.training.checkpoint import load_tensors

TRAIN = [
    *(
        "-m",
        "spikeshield.cli",
        "train",
        "--dataset",
        "digits",
        "--model",
        "mlp",
        "--model-opt",
        "hidden=[128]",
    ),
    *("--time-steps", "4", "--epochs", "4", "--batch-size", "16", "--seed", "3", "--device", "cpu"),
]


def without_timing(history):
    return [{k: v for k, v in e.items() if "second" not in k} for e in history]


def wait_for(path, process, timeout=180.0):
    start = time.monotonic()
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"training exited early with {process.returncode}")
        if time.monotonic() - start > timeout:
            process.kill()
            pytest.fail("no checkpoint appeared")
        time.sleep(0.01)


ENV = dict(os.environ, SPIKESHIELD_PROGRESS="0")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    full = subprocess.run(
        [sys.executable, *TRAIN, "--out", str(out)], env=ENV, capture_output=True, text=True
    )
    assert full.returncode == 0, full.stderr
    return out


@pytest.mark.parametrize("delay", [0.0, 0.15])
def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path, delay, uninterrupted):
    env = ENV
    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        [sys.executable, *TRAIN, "--out", str(cut)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_for(cut / "checkpoint.safetensors", proc)
    time.sleep(delay)  # 0: right as epoch 1's checkpoint lands; 0.15 s: inside a later epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (cut / "model.safetensors").exists()
    killed_at = read_json(cut / "metrics.json")["epochs"] if (cut / "metrics.json").exists() else 0

    resumed = subprocess.run(
        [sys.executable, *TRAIN, "--out", str(cut), "--resume"], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {cut} after epoch" in resumed.stdout or killed_at == 0
    a, _ = load_tensors(uninterrupted / "model.safetensors")
    b, _ = load_tensors(cut / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma, mb = read_json(uninterrupted / "metrics.json"), read_json(cut / "metrics.json")
    assert mb["complete"] and mb["test_accuracy"] == ma["test_accuracy"]
    assert without_timing(mb["history"]) == without_timing(ma["history"])
    assert not list(cut.glob(".*.tmp"))  # no half-written files left behind
