"""The command starts fast and fails in one line (issue 20): ``--help`` and ``--version`` import
neither torch nor a registry, each command builds only its own arguments, a missing dependency is
one line, and ``python -m spikeshield`` is the ``spikeshield`` command.

Timings are not tested here (``benchmarks/startup.py`` measures them); what makes start-up slow,
importing torch and the registries, is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spikeshield import __version__
from spikeshield.cli import COMMANDS, build_parser

HEAVY = ("torch", "numpy", "safetensors", "matplotlib", "spikeshield.neurons", "spikeshield.data")


def spikeshield(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run(
        [sys.executable, "-m", "spikeshield", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def imported_by(*args: str) -> set[str]:
    """The HEAVY modules that ``spikeshield ARGS`` imports (``-X importtime`` names every import)."""
    done = spikeshield(*args, env={"PYTHONPROFILEIMPORTTIME": "1"})
    names = {
        line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")
    }
    assert "spikeshield.cli" in names, done.stderr[-2000:]
    return {h for h in HEAVY if h in names}


@pytest.mark.parametrize("args", [["--version"], ["--help"], []], ids=["version", "help", "no-command"])
def test_help_and_version_import_nothing_heavy(args):
    assert imported_by(*args) == set()


def test_version_is_one_line_from_python_m():
    for module in ("spikeshield", "spikeshield.cli"):
        done = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True)
        assert done.returncode == 0 and done.stdout == f"spikeshield {__version__}\n", done


@pytest.fixture
def without_torch(tmp_path) -> dict[str, str]:
    """An environment in which ``import torch`` fails as it does where torch is not installed."""
    blocker = tmp_path / "blocker" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text(
        'raise ModuleNotFoundError("No module named \'torch\'", name="torch")\n'
    )
    return {"PYTHONPATH": str(blocker.parent)}


def test_without_torch_version_and_help_work_and_commands_fail_in_one_line(without_torch, tmp_path):
    done = spikeshield("--version", env=without_torch)
    assert done.returncode == 0 and done.stdout == f"spikeshield {__version__}\n" and done.stderr == ""
    assert spikeshield("--help", env=without_torch).returncode == 0
    for args in (["neurons"], ["train", "--out", str(tmp_path / "run")], ["evaluate", "--run", "x"]):
        done = spikeshield(*args, env=without_torch)
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert lines[0].startswith("spikeshield: error: the Python package 'torch' is not installed")
        assert "pip install torch" in lines[0]


def test_each_command_gets_the_same_arguments_alone_as_in_the_full_parser():
    def options(parser, name):
        sub = next(a for a in parser._actions if a.dest == "command").choices[name]
        return sorted((a.dest, tuple(a.option_strings), str(a.default)) for a in sub._actions)

    full = build_parser()
    for name in COMMANDS:
        assert options(build_parser(name), name) == options(full, name), name
    # the parser --help and --version use has every command, without their arguments
    bare = build_parser(None)
    assert set(next(a for a in bare._actions if a.dest == "command").choices) == set(COMMANDS)
    assert options(bare, "train") == [("help", ("-h", "--help"), "==SUPPRESS==")]


def test_a_mistyped_command_gets_a_suggestion():
    done = spikeshield("trian")
    assert (
        done.returncode == 2
        and "invalid choice: 'trian'" in done.stderr
        and "did you mean 'train'" in done.stderr
    )
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("world_size,teardown", [("1", True), ("2", False)])
def test_python_m_spikeshield_skips_teardown_under_torchrun(world_size, teardown):
    """As ``python -m spikeshield.cli``: a torchrun worker (WORLD_SIZE > 1) leaves with ``os._exit``
    once its work is done (see ``cli._exit``), so exit handlers do not run; a plain run exits normally."""
    code = (
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: print('teardown ran'))\n"
        "sys.argv = ['spikeshield', 'models']\n"
        "runpy.run_module('spikeshield', run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "WORLD_SIZE": world_size},
    )
    assert done.returncode == 0, done.stderr
    assert "resnet19" in done.stdout
    assert ("teardown ran" in done.stdout) == teardown
