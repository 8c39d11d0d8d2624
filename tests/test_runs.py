"""Loading run folders back (spikeshield.runs): what a folder without its weights is told."""

from __future__ import annotations

import pytest

from spikeshield.cli import main
from spikeshield.errors import CheckpointError, UsageError
from spikeshield.runs import load_model, weights_digest
from spikeshield.training import TrainConfig, train


@pytest.fixture
def run(tmp_path):
    config = TrainConfig(dataset="digits", model="mlp", model_options={"hidden": [8]}, epochs=1,
                         time_steps=2, limit_train=200, device="cpu")  # fmt: skip
    train(config, tmp_path / "run", progress=False, log=lambda _: None)
    return tmp_path / "run"


def test_a_finished_run_whose_weights_were_deleted_says_so(run, capsys):
    """It was reported as 'its training has not finished' (new-user trial)."""
    (run / "model.safetensors").unlink()
    expected = (
        f"{run}: its weights file model.safetensors is missing, though its training finished "
        "(metrics.json says so); put the file back, or train the run again into an empty folder"
    )
    for call in (load_model, weights_digest):
        with pytest.raises(CheckpointError) as err:
            call(run)
        assert str(err.value) == expected
    for argv in (["evaluate", "--run", str(run), "--limit", "10"], ["export", "--run", str(run), "--out",
                 str(run.parent / "m.nir")]):  # fmt: skip
        assert main(argv) == 1
        assert capsys.readouterr().err == f"spikeshield: error: {expected}\n"
    (run / "metrics.json").unlink()  # no record of a finished training: not finished
    with pytest.raises(UsageError, match="has no model.safetensors: its training has not finished"):
        weights_digest(run)
