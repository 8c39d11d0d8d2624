"""benchmarks/at_epoch_ratio.py times an experiment's variants end to end (a smoke test at one
epoch of digits: no timing is judged here)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "benchmarks" / "at_epoch_ratio.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)


def test_variants_of_an_experiment_get_their_cells_settings_and_a_ratio(tmp_path):
    out = tmp_path / "cost.json"
    experiment = str(ROOT / "experiments" / "oscillation.toml")
    done = _run("--experiment", experiment, "--variants", "lif/bptt", "osc-fake/bptt", "lif/pgd-at",
                "--repeats", "1", "--device", "cpu", "--json", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    results, setup = report["results"], report["setup"]
    assert list(results) == ["lif/bptt", "osc-fake/bptt", "lif/pgd-at"]
    assert results["lif/bptt"]["ratio_to_lif/bptt"] == 1.0
    assert all(len(r["epoch_seconds"]) == 1 and r["median_seconds"] > 0 for r in results.values())
    assert setup["lif/pgd-at"]["mode"] == "at" and setup["lif/pgd-at"]["mode_options"]["steps"] == 5
    assert setup["osc-fake/bptt"]["neuron_options"]["backward_amplitude"] == 4.0
    assert all(s["epochs"] == 1 and s["dataset"] == "digits" for k, s in setup.items() if "/" in k)
    assert "lif/pgd-at" in done.stdout


def test_an_unknown_variant_is_a_one_line_error():
    done = _run("--experiment", str(ROOT / "experiments" / "oscillation.toml"), "--variants", "lif/at")
    assert done.returncode == 2 and "no cell lif/at" in done.stderr and "osc/bptt" in done.stderr


def _module():
    spec = importlib.util.spec_from_file_location("at_epoch_ratio", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dataset_and_model_choose_the_experiments_cells():
    experiment = str(ROOT / "experiments" / "oscillation_datasets.toml")
    configs = _module().experiment_configs(
        experiment, ["lif/bptt", "lif/pgd-at-mnist"], None, "cpu", dataset="mnist", model="cnn"
    )
    assert {(c.dataset, c.model) for c in configs.values()} == {("mnist", "cnn")}
    first = _module().experiment_configs(experiment, ["lif/bptt"], None, "cpu")["lif/bptt"]
    assert (first.dataset, first.model) == ("mnist", "mlp")  # without them: the grid's first cell


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--dataset", "cifar10", "--variants", "lif/pgd-at-mnist"],
            "no cell lif/pgd-at-mnist with dataset cifar10",
        ),
        (["--model", "vgg11", "--variants", "lif/bptt"], "no cell with model vgg11"),
        (
            ["--limit-train", "300", "--variants", "lif/bptt"],
            "--limit-train does not apply with --experiment",
        ),
        # refused even at its default value: the cells fix it
        (["--batch-size", "64", "--variants", "lif/bptt"], "--batch-size does not apply with --experiment"),
        (
            ["--repeats", "0", "--variants", "lif/bptt"],
            "argument --repeats: must be a positive integer, got '0'",
        ),
    ],
)
def test_missing_cells_ignored_flags_and_bad_repeats_are_one_line_errors(flags, message):
    done = _run("--experiment", str(ROOT / "experiments" / "oscillation_datasets.toml"), *flags)
    assert done.returncode == 2 and message in done.stderr
