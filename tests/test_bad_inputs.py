"""The table of bad inputs: each ends in one clear line (CLI exit 2 for usage errors, 1 for
runtime problems) and leaves results that already exist untouched."""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch

from spikeshield.attacks.noise import corrupt
from spikeshield.cli import main
from spikeshield.data import load_dataset
from spikeshield.errors import UsageError
from spikeshield.interop import to_nir
from spikeshield.io import read_json
from spikeshield.models import build_model
from spikeshield.neurons import build_neuron

from .conftest import write_idx

BASE = [
    "train",
    "--dataset",
    "digits",
    "--model",
    "mlp",
    "--model-opt",
    "hidden=[32]",
    "--epochs",
    "1",
    "--time-steps",
    "2",
]
NEW = "{new}"  # a fresh output folder
EXISTING = "{existing}"  # a folder holding a complete run
INCOMPLETE = "{incomplete}"  # a run interrupted after its first epoch
MNIST = "{mnist}"  # a folder of small, valid MNIST IDX files


def train_args(*extra: str, out: str = NEW) -> list[str]:
    return [*BASE, *extra, "--out", out]


def mnist_args(*extra: str) -> list[str]:
    return ["train", "--dataset", "mnist", "--model", "mlp", "--epochs", "1", *extra, "--out", NEW]


def evaluate_args(*extra: str) -> list[str]:
    """Evaluate the complete run, writing elsewhere (the run's own files must stay untouched)."""
    return ["evaluate", "--run", EXISTING, "--limit", "20", *extra, "--out", NEW]


def truncate(path: Path) -> None:
    raw = gzip.decompress(path.read_bytes())
    with gzip.open(path, "wb") as fh:
        fh.write(raw[:-50])


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/spikeshield-bad-input-pwned",))


def replace_checkpoint_with_pickle(run: Path) -> None:
    (run / "checkpoint.safetensors").write_bytes(pickle.dumps(Exploit()))


def replace_checkpoint_with_garbage(run: Path) -> None:
    (run / "checkpoint.safetensors").write_bytes(b"\x00" * 7)


def disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("spikeshield.io.os.fsync", no_space)


# (id, argv, exit code, message, setup(paths) or None)
CLI_CASES = [
    ("unknown dataset", train_args("--dataset", "mnits"), 2, "Did you mean 'mnist'", None),
    ("unknown model", train_args("--model", "cnnn"), 2, "Did you mean 'cnn'", None),
    ("unknown neuron", train_args("--neuron", "lfi"), 2, "Did you mean 'lif'", None),
    ("unknown surrogate", train_args("--neuron-opt", "surrogate=sigmod"), 2, "Did you mean 'sigmoid'", None),
    ("unknown optimizer", train_args("--optimizer", "rmsprop"), 2, "invalid choice", None),
    ("unknown command", ["trian"], 2, "invalid choice", None),
    ("T = 0", train_args("--time-steps", "0"), 2, r"--time-steps \(-T\) must be a positive integer, got 0", None),
    ("T < 0", train_args("--time-steps", "-3"), 2, r"--time-steps \(-T\) must be a positive integer, got -3", None),
    ("T not a number", train_args("--time-steps", "four"), 2, "invalid int value", None),
    ("zero epochs", train_args("--epochs", "0"), 2, "--epochs must be a positive integer", None),
    ("zero threads", train_args("--threads", "0"), 2, "--threads must be a positive integer, got 0", None),
    ("zero batch size", train_args("--batch-size", "0"), 2, "--batch-size must be a positive integer", None),
    ("negative lr", train_args("--lr", "-0.1"), 2, "--lr must be > 0", None),
    ("NaN lr", train_args("--lr", "nan"), 2, "--lr must be a finite number", None),
    ("tau = 1", train_args("--neuron-opt", "tau=1"), 2, "tau must be > 1", None),
    ("tau < 1", train_args("--neuron-opt", "tau=0.5"), 2, "tau must be > 1", None),
    ("decay > 1", train_args("--neuron-opt", "decay=1.5"), 2, r"decay must be in \(0, 1\]", None),
    ("negative leak", train_args("--neuron", "linear-lif", "--neuron-opt", "leak=-0.1"), 2, "leak must be >= 0", None),
    ("option for another neuron", train_args("--neuron", "if", "--neuron-opt", "tau=2"), 2, "'if' does not take option", None),
    ("unknown model option", train_args("--model-opt", "depth=3"), 2, "does not take option.*depth", None),
    ("option without value", train_args("--neuron-opt", "tau"), 2, "KEY=VALUE", None),
    ("bad reset mode", train_args("--neuron-opt", "reset=medium"), 2, "reset must be one of", None),
    ("zero training subset", train_args("--limit-train", "0"), 2, "--limit-train must be a positive integer", None),
    ("quick job with no seeds", ["run", "--seeds", "0", "--out", NEW], 2, "--seeds must be >= 1", None),
    ("mnist without a data root", mnist_args(), 1, "no data root given", None),
    ("mnist root that does not exist", mnist_args("--data-root", "/nonexistent/data"), 1, "not found", None),
    ("truncated data file", mnist_args("--data-root", MNIST), 1, "truncated or corrupt",
     lambda p: truncate(p["mnist"] / "MNIST/raw/train-images-idx3-ubyte.gz")),
    ("data file not gzip", mnist_args("--data-root", MNIST), 1, "not a readable gzip",
     lambda p: (p["mnist"] / "MNIST/raw/train-labels-idx1-ubyte.gz").write_bytes(b"plain text")),
    ("data file with bad magic", mnist_args("--data-root", MNIST), 1, "bad IDX magic",
     lambda p: write_idx(p["mnist"] / "MNIST/raw/t10k-images-idx3-ubyte.gz", bytes(784), (1, 28, 28), magic=7)),
    ("output folder is a file", train_args(out="{blocked}/run"), 1, "cannot create output folder", None),
    ("model option channels = 0", ["train", "--dataset", "digits", "--model", "cnn", "--model-opt", "channels=0", "--epochs", "1", "--out", NEW], 2, "channels must be a positive integer, got 0", None),
    ("existing run without --resume", train_args(out=EXISTING), 2, "already holds a run", None),
    ("resume with other settings", train_args("--lr", "0.5", "--resume", out=EXISTING), 2, "other settings.*lr", None),
    ("resume from a corrupt checkpoint", train_args("--resume", out=INCOMPLETE), 1, "too short to be a safetensors file",
     lambda p: replace_checkpoint_with_garbage(p["incomplete"])),
    ("resume from a pickle", train_args("--resume", out=INCOMPLETE), 1, "not a safetensors file",
     lambda p: replace_checkpoint_with_pickle(p["incomplete"])),
    ("disk full", train_args(), 1, "No space left on device", "disk-full"),
    ("unknown attack", evaluate_args("--attack", "pgdd"), 2, "unknown attack 'pgdd'. Did you mean 'pgd'", None),
    ("negative eps", evaluate_args("--eps", "-0.1"), 2, "eps must be finite and >= 0", None),
    ("NaN eps", evaluate_args("--eps", "nan"), 2, "eps must be finite and >= 0", None),
    ("unknown attacker gradient", evaluate_args("--gradient", "surogate:atan"), 2, "unknown gradient 'surogate:atan'", None),
    ("zero attack steps", evaluate_args("--steps", "0"), 2, "--steps must be an integer >= 1, got 0", None),
    ("zero EOT samples", evaluate_args("--eot", "0"), 2, "--eot must be an integer >= 1, got 0", None),
    ("unknown norm", evaluate_args("--norm", "l3"), 2, "invalid choice: 'l3'", None),
    ("unknown noise on the CLI", evaluate_args("--noise", "gausian"), 2, "Did you mean 'gaussian'", None),
    ("evaluate a missing run", ["evaluate", "--run", "/nonexistent/run", "--out", NEW], 2, "does not exist", None),
    ("evaluate a run's config.json", ["evaluate", "--run", EXISTING + "/config.json", "--out", NEW], 2, "config.json is a file, not a run folder", None),
    ("transfer from a missing source", evaluate_args("--attack", "transfer", "--source", "/nonexistent/run"), 2, "--source /nonexistent/run does not exist", None),
    ("transfer from a file", evaluate_args("--attack", "transfer", "--source", EXISTING + "/metrics.json"), 2, "metrics.json is a file, not a run folder", None),
    ("transfer from a folder of no run", evaluate_args("--attack", "transfer", "--source", EXISTING + "/.."), 2, "is not a run folder \\(it has no config.json\\)", None),
    ("export a missing run", ["export", "--run", "/nonexistent/run", "--out", NEW + "/m.nir"], 2, "does not exist", None),
    ("export over the run's own config", ["export", "--run", EXISTING, "--out", EXISTING + "/config.json"], 2, "the exported run's own file config.json", None),
    ("export over the run's weights, --overwrite", ["export", "--run", EXISTING, "--out", EXISTING + "/model.safetensors", "--overwrite"], 2, "the exported run's own file model.safetensors", None),
    ("export into a folder, --overwrite", ["export", "--run", EXISTING, "--out", EXISTING, "--overwrite"], 2, "is a folder; name the NIR file to write", None),
    ("export with dt = 0", ["export", "--run", EXISTING, "--dt", "0", "--out", NEW + "/m.nir"], 2, "dt must be > 0", None),
    ("export to an unknown format", ["export", "--run", EXISTING, "--format", "onnx", "--out", NEW + "/m.nir"], 2, "invalid choice: 'onnx'", None),
    ("convert with N = 0", ["convert", "--run", EXISTING, "--to", "multistep", "-T", "0", "--out", NEW], 2, r"--time-steps \(-T\) must be a positive integer, got 0", None),
    ("convert a LIF run", ["convert", "--run", EXISTING, "--to", "multistep", "-T", "8", "--out", NEW], 2, "converts a run of 'noisy-if' units; this run's neuron is 'lif'", None),
    ("convert a LIF run to ann2snn", ["convert", "--run", EXISTING, "--to", "ann2snn", "-T", "8", "--out", NEW], 2, "converts a run of 'relu' units", None),
    ("convert to an unknown target", ["convert", "--run", EXISTING, "--to", "lif", "-T", "8", "--out", NEW], 2, "invalid choice: 'lif'", None),
    ("convert a missing run", ["convert", "--run", "/nonexistent/run", "--to", "multistep", "-T", "8", "--out", NEW], 2, "does not exist", None),
    ("convert an unfinished run", ["convert", "--run", INCOMPLETE, "--to", "multistep", "-T", "8", "--out", NEW], 2, "has no model.safetensors: its training has not finished", None),
    ("convert with V[0] = V_th", ["convert", "--run", EXISTING, "--to", "multistep", "-T", "8", "--v-init", "1", "--out", NEW], 2, r"--v-init must be in \[0, 1\)", None),
    ("convert with a sweep N = 0", ["convert", "--run", EXISTING, "--to", "multistep", "-T", "8", "--sweep", "4", "0", "--out", NEW], 2, "--sweep must be a positive integer, got 0", None),
    ("convert with threshold scale 0", ["convert", "--run", EXISTING, "--to", "ann2snn", "-T", "8", "--threshold-scale", "0", "--out", NEW], 2, "--threshold-scale must be > 0", None),
    ("convert with percentile 0", ["convert", "--run", EXISTING, "--to", "ann2snn", "-T", "8", "--percentile", "0", "--out", NEW], 2, r"--percentile must be in \(0, 100\]", None),
    ("convert with no calibration samples", ["convert", "--run", EXISTING, "--to", "ann2snn", "-T", "8", "--calibration-samples", "0", "--out", NEW], 2, "--calibration-samples must be a positive integer", None),
    ("convert to multistep with a percentile", ["convert", "--run", EXISTING, "--to", "multistep", "-T", "8", "--percentile", "99", "--out", NEW], 2, "--percentile applies only to --to ann2snn", None),
]  # fmt: skip


def digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()
    }


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    assert main([*BASE, "--out", str(root / "existing")]) == 0
    return root


@pytest.fixture
def paths(tmp_path, trained_runs, tiny_mnist):
    existing = tmp_path / "existing"
    shutil.copytree(trained_runs / "existing", existing)
    incomplete = tmp_path / "incomplete"
    shutil.copytree(trained_runs / "existing", incomplete)
    metrics = read_json(incomplete / "metrics.json")
    (incomplete / "metrics.json").write_text(
        json.dumps({**metrics, "complete": False, "epochs": 1, "history": metrics["history"][:1]})
    )
    (incomplete / "model.safetensors").unlink()
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be")
    return {
        "new": tmp_path / "new",
        "existing": existing,
        "incomplete": incomplete,
        "mnist": tiny_mnist,
        "blocked": blocked,
    }


def run_main(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse usage errors
        return int(exc.code)


def test_the_table_is_long_enough():
    assert len(CLI_CASES) + len(API_CASES) >= 30


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(case, paths, capsys, monkeypatch):
    _, argv, code, message, setup = case
    if setup == "disk-full":
        disk_full(monkeypatch)
    elif setup is not None:
        setup(paths)
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    before = {name: digest(paths[name]) for name in ("existing", "incomplete")}
    marker = Path("/tmp/spikeshield-bad-input-pwned")
    marker.unlink(missing_ok=True)
    argv = [a.format(**{k: str(v) for k, v in paths.items()}) for a in argv]

    assert run_main(argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("spikeshield: error:"), err
    assert re.search(message, err), err
    assert "Traceback" not in err
    assert {name: digest(paths[name]) for name in ("existing", "incomplete")} == before
    assert not marker.exists()
    leftovers = [p for p in paths["new"].rglob("*")] if paths["new"].exists() else []
    assert not any(p.suffix == ".tmp" for p in leftovers)


def test_cuda_without_a_gpu(paths, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert run_main(train_args("--device", "cuda", out=str(paths["new"]))) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


API_CASES = [
    ("neuron input without a time axis", lambda: build_neuron("lif")(torch.rand(5)), r"shape \[T, B, \.\.\.\]"),
    ("neuron input of integers", lambda: build_neuron("lif")(torch.ones(2, 3, dtype=torch.long)), "floating-point"),
    ("dlif input with the wrong T", lambda: build_neuron("dlif", time_steps=4)(torch.rand(3, 2, 5)), "T = 4"),
    ("NaN in the model input", lambda: build_model("mlp", input_shape=(1, 8, 8))(torch.full((2, 1, 8, 8), float("nan"))), "NaN"),
    ("infinite model input", lambda: build_model("mlp", input_shape=(1, 8, 8))(torch.full((2, 1, 8, 8), float("inf"))), "infinite"),
    ("model input of the wrong shape", lambda: build_model("mlp", input_shape=(1, 8, 8))(torch.rand(2, 3, 8, 8)), r"\[B, 1, 8, 8\]"),
    ("negative noise level", lambda: corrupt("gaussian", torch.rand(2, 1, 8, 8), -0.1), "level must be a number >= 0"),
    ("unknown noise", lambda: corrupt("gausian", torch.rand(2, 1, 8, 8), 0.1), "Did you mean 'gaussian'"),
    ("bad split", lambda: load_dataset("digits", "validation"), "split must be"),
    ("zero voters", lambda: build_model("mlp", input_shape=(1, 8, 8), readout="voting", voters=0), "voters"),
    ("NIR export with dt < 0", lambda: to_nir(build_model("mlp", input_shape=(1, 8, 8)), dt=-1e-3), "dt must be > 0"),
    ("NIR export of a soft-reset neuron", lambda: to_nir(build_model("mlp", input_shape=(1, 8, 8), neuron_options={"reset": "soft"})), "soft reset"),
]  # fmt: skip


@pytest.mark.parametrize("case", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_bad_input(case):
    _, call, message = case
    with pytest.raises(UsageError, match=message) as info:
        call()
    assert "\n" not in str(info.value)
