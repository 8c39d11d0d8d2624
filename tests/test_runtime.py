"""The CPU thread policy (spikeshield.runtime): which settings a process ends up with.

Start-up behaviour (the OpenMP wait policy is fixed when OpenMP loads) is checked in fresh
interpreters; the choice of the thread count in this one, with the module's state restored.
These tests check settings, not timings (benchmarks/shared_cpu.py measures the effect).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from spikeshield import runtime
from spikeshield.errors import UsageError

#: variables that would make the policy a user's choice in a child process
CHOICES = (
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "KMP_BLOCKTIME",
    "MKL_NUM_THREADS",
    runtime.THREADS_ENV,
)


def child(code: str, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter with no thread settings but ``env``; it prints JSON."""
    environ = {k: v for k, v in os.environ.items() if k not in CHOICES}
    environ.update(env)
    out = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


REPORT = """
import json, os
from spikeshield import runtime
from spikeshield.kernels import cpu
n = runtime.configure_threads()
print(json.dumps({
    **runtime.thread_settings(), "returned": n, "env": os.environ.get("OMP_WAIT_POLICY"),
    "usable": runtime.usable_cpus(), "torch_default": runtime._baseline, "kernel_threads": cpu.threads(),
}))
"""


def test_spikeshield_first_sleeps_idle_threads_and_uses_every_usable_cpu() -> None:
    got = child("import spikeshield, torch\n" + REPORT)
    assert got["env"] == "PASSIVE" and got["wait_policy"] == "passive" and got["set_by"] == "spikeshield"
    assert (
        got["threads"] == got["returned"] == got["kernel_threads"] == min(got["usable"], got["torch_default"])
    )
    assert got["threads_source"] == "automatic"


def test_the_affinity_mask_is_respected() -> None:
    got = child(
        "import os\nos.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\nimport spikeshield, torch\n"
        + REPORT
    )
    assert got["usable"] == 1 and got["threads"] == 1


def test_the_command_line_prepares_the_process_before_torch_loads() -> None:
    """The ``spikeshield`` script imports ``spikeshield.cli``, i.e. the package first."""
    code = """
import contextlib, io, json
import spikeshield.cli as cli
with contextlib.redirect_stdout(io.StringIO()):
    rc = cli.main(["neurons"])
from spikeshield import runtime
print(json.dumps({**runtime.thread_settings(), "rc": rc}))
"""
    got = child(code)
    assert got["rc"] == 0 and got["wait_policy"] == "passive" and got["threads_source"] == "automatic"


@pytest.mark.parametrize(
    ("env", "policy"),
    [
        ({"OMP_WAIT_POLICY": "ACTIVE"}, "active"),
        ({"GOMP_SPINCOUNT": "0"}, "passive"),
        ({"GOMP_SPINCOUNT": "300000"}, "spin"),
    ],
)
def test_a_users_wait_policy_is_left_alone(env: dict[str, str], policy: str) -> None:
    got = child("import spikeshield, torch\n" + REPORT, **env)
    assert got["wait_policy"] == policy and got["set_by"].startswith("user:")
    assert got["env"] == env.get("OMP_WAIT_POLICY")


def test_torch_imported_first_cannot_change_the_wait_policy() -> None:
    got = child("import torch, spikeshield\n" + REPORT)
    assert got["wait_policy"] == "spin" and got["env"] is None
    assert 1 <= got["threads"] <= got["usable"]  # fewer if other processes keep CPUs busy


def test_spikeshield_threads_torch_restores_the_old_behaviour() -> None:
    got = child(
        "import spikeshield, torch; n0 = torch.get_num_threads(); " + REPORT, SPIKESHIELD_THREADS="torch"
    )
    assert got["env"] is None and got["wait_policy"] == "spin"
    assert got["threads_source"] == "SPIKESHIELD_THREADS=torch"


def test_omp_num_threads_and_spikeshield_threads_are_explicit_choices() -> None:
    assert child("import spikeshield, torch\n" + REPORT, OMP_NUM_THREADS="1")["threads"] == 1
    got = child("import spikeshield, torch\n" + REPORT, SPIKESHIELD_THREADS="3")
    assert got["threads"] == 3 and got["threads_source"] == runtime.THREADS_ENV


# ------------------------------------------------------------------ in this process
@pytest.fixture
def fresh_policy(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Forget every thread decision (restored afterwards), with no thread settings in the env."""
    threads = torch.get_num_threads()
    for name in ("_baseline", "_applied", "_source", "_warned"):
        monkeypatch.setattr(runtime, name, None if name != "_warned" else False)
    for name in ("OMP_NUM_THREADS", runtime.THREADS_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(runtime, "_wait", {"wait_policy": "passive", "set_by": "spikeshield"})
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_explicit_count_wins_and_is_kept_by_later_automatic_calls(fresh_policy: None) -> None:
    from spikeshield.kernels import cpu

    assert runtime.configure_threads(3) == 3 == torch.get_num_threads() == cpu.threads()
    assert runtime.configure_threads() == 3  # e.g. train() after `spikeshield train --threads 3`
    assert runtime.thread_settings()["threads_source"] == "explicit"


def test_a_workers_share_is_kept_when_the_environment_names_the_total(
    fresh_policy: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--jobs 2` under SPIKESHIELD_THREADS=2: each worker's 1 thread survives train()'s own
    configure_threads() (once, the env's 2 won there: two workers ran 2 threads each)."""
    monkeypatch.setenv(runtime.THREADS_ENV, "2")
    assert runtime.configure_threads(runtime.threads_per_job(2)) == 1
    assert runtime.configure_threads() == 1 == torch.get_num_threads()


def test_a_torch_set_num_threads_by_the_user_is_kept(
    fresh_policy: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 2)
    assert runtime.configure_threads() == 2
    torch.set_num_threads(1)
    assert runtime.configure_threads() == 1
    assert runtime.thread_settings()["threads_source"] == "torch.set_num_threads"


def test_automatic_count_is_usable_cpus_capped_by_torchs_default(
    fresh_policy: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 1)
    assert runtime.configure_threads() == 1  # e.g. a cgroup quota of one CPU
    monkeypatch.setattr(runtime, "_applied", None)
    monkeypatch.setattr(runtime, "_baseline", None)
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 16)
    torch.set_num_threads(2)  # torch's own default (physical cores) stays the ceiling
    assert runtime.configure_threads() == 2


def test_spinning_runtime_leaves_busy_cpus_with_one_warning(
    fresh_policy: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "_wait", {"wait_policy": "spin", "set_by": "OpenMP's default"})
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 2)
    monkeypatch.setattr(runtime, "_running_elsewhere", lambda: 1)
    with pytest.warns(RuntimeWarning, match="spin while they wait"):
        assert runtime.configure_threads() == 1
    monkeypatch.setattr(runtime, "_running_elsewhere", lambda: 0)
    assert runtime.configure_threads() == 2
    monkeypatch.setattr(runtime, "_wait", {"wait_policy": "passive", "set_by": "spikeshield"})
    monkeypatch.setattr(runtime, "_running_elsewhere", lambda: 5)
    assert runtime.configure_threads() == 2  # sleeping threads share the CPUs: no need to leave any


def test_cgroup_quota_caps_the_usable_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_cgroup_quota", lambda: 1)
    assert runtime.usable_cpus() == 1
    monkeypatch.setattr(runtime, "_cgroup_quota", lambda: None)
    assert runtime.usable_cpus() == len(os.sched_getaffinity(0))


def test_threads_per_job_splits_the_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(runtime.THREADS_ENV, raising=False)
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 8)
    assert [runtime.threads_per_job(j) for j in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert runtime.threads_per_job(2) == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, "x"])
def test_bad_counts_are_usage_errors(fresh_policy: None, bad: object) -> None:
    with pytest.raises(UsageError, match="threads must be a positive integer"):
        runtime.configure_threads(bad)  # type: ignore[arg-type]


def test_cli_threads_option_is_used_recorded_and_handed_to_workers(
    fresh_policy: None, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spikeshield.cli import main
    from spikeshield.io import read_json

    args = ["train", "--dataset", "digits", "--model", "mlp", "--model-opt", "hidden=[16]", "--epochs", "1"]
    assert main([*args, "--time-steps", "2", "--threads", "1", "--out", str(tmp_path / "run")]) == 0
    env = read_json(tmp_path / "run" / "metrics.json")["environment"]
    assert env["torch_threads"] == 1 and env["omp_wait_policy"] in ("passive", "spin", "active")
    assert runtime.THREADS_ENV not in os.environ  # set for the command's workers only, then restored
    monkeypatch.setenv(runtime.THREADS_ENV, "4")  # what a --jobs 2 worker of `--threads 4` sees
    assert runtime.threads_per_job(2) == 2


@pytest.mark.parametrize("text", ["0", "-2", "two", ""])
def test_the_benchmarks_threads_flag_names_a_bad_count(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="bench.py")
    parser.add_argument("--threads", type=runtime.positive_count, default=None)
    assert parser.parse_args(["--threads", "3"]).threads == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["--threads", text])
    err = capsys.readouterr().err
    assert f"bench.py: error: argument --threads: must be a positive integer, got {text!r}" in err
