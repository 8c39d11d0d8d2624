"""Small trained models shared by the attack tests (trained once per session, a few seconds)."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from spikeshield.data import load_dataset
from spikeshield.training import TrainConfig, build_model_for, load_model_weights, train

DIGITS_LIF = TrainConfig(
    dataset="digits", model="cnn", neuron="lif", epochs=8, batch_size=64, time_steps=4, seed=0, device="cpu"
)


def _trained(config: TrainConfig, tmp_path_factory, name: str) -> Path:
    out = tmp_path_factory.mktemp("runs") / name
    train(config, out, log=lambda _m: None)
    return out


def _loaded(config: TrainConfig, run: Path) -> nn.Module:
    model = build_model_for(config)
    load_model_weights(run / "model.safetensors", model, model.spec)
    return model.eval()


@pytest.fixture(scope="session")
def digits_lif_run(tmp_path_factory) -> Path:
    """A run folder: the undefended digits ``cnn`` with LIF neurons (T = 4), ~97 % clean."""
    return _trained(DIGITS_LIF, tmp_path_factory, "digits-lif")


@pytest.fixture
def digits_lif(digits_lif_run) -> nn.Module:
    return _loaded(DIGITS_LIF, digits_lif_run)


@pytest.fixture(scope="session")
def digits_test():
    return load_dataset("digits", "test")


@pytest.fixture(scope="session")
def digits_ann() -> nn.Module:
    """A small trained ANN (MLP with ReLU) on digits, for the reference cross-check."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    x, y = load_dataset("digits", "train").tensors()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


#: the oscillation defence (issue 15): oscillating membrane, and a fake backward oscillation
OSCILLATION = {"amplitude": 0.2, "frequency": 0.25}
FAKE_BACKWARD = {"backward_amplitude": 4.0, "backward_frequency": 0.5, "backward_phase": 1.5707963}
DIGITS_OSCILLATION = replace(
    DIGITS_LIF, neuron="oscillating-lif", neuron_options={**OSCILLATION, **FAKE_BACKWARD}
)


@pytest.fixture(scope="session")
def digits_oscillation_run(tmp_path_factory) -> Path:
    """The digits ``cnn`` with the oscillation defence (trained through its true gradient)."""
    return _trained(DIGITS_OSCILLATION, tmp_path_factory, "digits-oscillation")


@pytest.fixture
def digits_oscillation(digits_oscillation_run) -> nn.Module:
    return _loaded(DIGITS_OSCILLATION, digits_oscillation_run)
