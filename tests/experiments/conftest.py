"""A small trained run shared by the experiment-layer tests (a few seconds, once per session)."""

import shutil
from pathlib import Path

import pytest

from spikeshield.training import TrainConfig, train

DIGITS_MLP = TrainConfig(
    dataset="digits", model="mlp", neuron="lif", model_options={"hidden": [64]}, time_steps=2, epochs=4,
    batch_size=64, seed=0, device="cpu",
)  # fmt: skip


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "digits-mlp-lif"
    train(DIGITS_MLP, out, log=lambda _m: None)
    return out


@pytest.fixture
def run_dir(trained_run, tmp_path) -> Path:
    """A private copy of the trained run, so a test can write into it."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))
