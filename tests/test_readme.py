"""Every code block of the README runs, in order, in one scratch folder.

Python blocks run as written. In shell blocks every ``spikeshield`` command runs through the
CLI's ``main`` with the tiny settings of :data:`SHRINK` appended (by command, or by command and
subcommand such as ``sample train``; the README's own flags stay;
where both give a flag, the later one, ours, wins), and the CPU ``torchrun`` line runs as a
subprocess. The lines of :data:`NOT_RUN` (installing, the test suite itself, GPU and
multi-machine launches) are not run; any other line makes this test fail until it is handled.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spikeshield.cli import main
from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

SHRINK = {
    "run": ["--epochs", "1", "--sigmas", "0", "0.3", "--eps", "0", "0.1", "--steps", "2"],
    "train": ["--limit-train", "300", "--limit-test", "100"],
    "evaluate": ["--limit", "40", "--check-samples", "20"],  # and EVALUATE_SHRINK where it applies
    "experiment": ["--models", "mlp", "--seeds", "0", "--neurons", "if", "--limit-train", "200",
                   "--limit-test", "40", "--epochs", "1"],
    "analyze": ["--time-steps", "100"],
    "sample train": ["--limit-train", "200", "--limit-test", "50", "--epochs", "1"],
    "sample evaluate": ["--limit", "50"],
    "sample compress": ["--splits", "test"],
    "sample experiment": ["--seeds", "0", "--datasets", "mnist", "--limit-train", "100", "--limit-test", "20",
                          "--epochs", "1"],
}  # fmt: skip
#: evaluate's attack settings, each added only where the command runs something that takes it
#: (evaluate refuses an option nothing it runs would use): steps for the iterative attacks and
#: ``--suite reliable``, queries for Square (also in the ensemble and the reliable suite), the
#: twin's epochs for a transfer attack crafted on the ANN twin
EVALUATE_SHRINK = {
    "--steps": ("2", {"pgd", "apgd", "apgd-ce", "apgd-dlr", "sa-pgd", "ensemble", "transfer", "reliable"}),
    "--queries": ("20", {"square", "ensemble", "reliable"}),
    "--twin-epochs": ("0", {"transfer"}),
}
NOT_RUN = [
    "python3 -m venv .venv",
    ". .venv/bin/activate",
    "pip install torch==2.13.0",
    'pip install -e ".[plot]"',
    'pip install -e ".[test]"',
    "python -m pytest",
    "torchrun --standalone --nproc_per_node=4 -m spikeshield.cli train --dataset cifar10 --model vgg11 "
    "--neuron dlif --time-steps 8 --device cuda --out runs/vgg11-dlif",
    "torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST0:29500 "
    "-m spikeshield.cli train ... --out /shared/runs/x",
]


def code_blocks() -> list[tuple[str, str]]:
    return re.findall(r"```(\w+)\n(.*?)```", README.read_text(), flags=re.S)


def shell_commands(code: str) -> list[str]:
    """The commands of a shell block: continuations joined, comments dropped, split at && and ;."""
    joined = re.sub(r"\\\n\s*", " ", code)
    commands = []
    for line in joined.splitlines():
        line = " ".join(re.sub(r"(^|\s)#.*$", "", line).split())
        commands += [c.strip() for c in re.split(r"&&|;", line) if c.strip()]
    return commands


def run_spikeshield(command: str) -> None:
    argv = shlex.split(command.replace("../shared/data", str(SHARED_DATA)))[1:]
    argv = [str(ROOT / a) if a.startswith("experiments/") else a for a in argv]
    argv += SHRINK.get(" ".join(argv[:2]), SHRINK.get(argv[0], []))
    if argv[0] == "evaluate":
        runs = set(argv)  # the attacks and suite named (enough for the README's commands)
        for flag, (value, users) in EVALUATE_SHRINK.items():
            if runs & users and not (flag == "--twin-epochs" and "--source" in runs):
                argv += [flag, value]
    assert main(argv) == 0, command


def run_torchrun(command: str) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun is not installed beside this Python"
    argv = [torchrun, *shlex.split(command)[1:], "--model", "mlp", "--time-steps", "2"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("readme")


def test_the_readme_has_the_blocks_this_test_knows():
    langs = [lang for lang, _ in code_blocks()]
    assert set(langs) == {"bash", "python"} and langs.count("python") == 3


@pytest.mark.parametrize("index", range(len(code_blocks())))
def test_readme_block_runs(index, scratch, monkeypatch):
    lang, code = code_blocks()[index]
    monkeypatch.chdir(scratch)
    if lang == "python":
        namespace: dict = {}
        exec(compile(code, f"README.md block {index}", "exec"), namespace)
        if "metrics" in namespace:  # the API block: the loaded run gives back the trained accuracy
            model, test_set = namespace["model"], namespace["test_set"]
            x, y = test_set.tensors()
            assert (model(x).argmax(1) == y).float().mean().item() == pytest.approx(
                namespace["metrics"]["test_accuracy"]
            )
        if "to_nir" in code:  # the NIR block: the exported file is there
            assert (scratch / "cnn-lif.nir").is_file()
        return
    commands = shell_commands(code)
    if any("../shared/data" in c for c in commands) and not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    for command in commands:
        if command in NOT_RUN:
            continue
        if command.startswith("spikeshield "):
            run_spikeshield(command)
        elif command.startswith("torchrun ") and "--device cpu" in command:
            run_torchrun(command)
        else:
            pytest.fail(f"README command neither run nor listed in NOT_RUN: {command}")


def test_every_line_listed_as_not_run_is_still_in_the_readme():
    commands = [c for lang, code in code_blocks() if lang == "bash" for c in shell_commands(code)]
    assert [c for c in NOT_RUN if c not in commands] == []
