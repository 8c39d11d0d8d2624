"""Trained runs shared by the NIR tests: a cnn with LIF neurons and an mlp with IF neurons, each
trained for one epoch on 2000 real MNIST images (../shared/data), plus a 256-image test batch."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import pytest
import torch

from spikeshield.data import load_dataset
from spikeshield.runs import load_model
from spikeshield.training import TrainConfig, train

from ..conftest import SHARED_DATA

REQUIRE_PEERS = bool(os.environ.get("SPIKESHIELD_REQUIRE_NIR_PEERS"))

RUNS = {
    "cnn-lif": {"model": "cnn", "neuron": "lif", "model_options": {"channels": 8}},
    "mlp-if": {"model": "mlp", "neuron": "if", "model_options": {"hidden": [128, 64]}},
}


def need(module: str) -> ModuleType:
    """Import a peer library; in CI (SPIKESHIELD_REQUIRE_NIR_PEERS=1) a missing one fails, never skips."""
    if REQUIRE_PEERS:
        return importlib.import_module(module)
    return pytest.importorskip(
        module, reason="pip install --no-deps nirtorch==2.6 snntorch==1.0.0 norse==1.1.0"
    )


need("nir")


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def trained(tmp_path_factory, mnist_root) -> dict[str, Path]:
    """Run folders written by ``train`` (1 epoch, 2000 training images, T = 4)."""
    root = tmp_path_factory.mktemp("nir-runs")
    runs = {}
    for name, options in RUNS.items():
        config = TrainConfig(
            dataset="mnist", epochs=1, time_steps=4, limit_train=2000, limit_test=256, batch_size=64,
            data_root=str(mnist_root), device="cpu", **options,
        )  # fmt: skip
        train(config, root / name, progress=False, log=lambda _: None)
        runs[name] = root / name
    return runs


@pytest.fixture(scope="session")
def mnist_batch(mnist_root) -> tuple[torch.Tensor, torch.Tensor]:
    """256 MNIST test images in [0, 1] and their labels."""
    return load_dataset("mnist", "test", mnist_root, limit=256).tensors()


def trained_model(trained: dict[str, Path], name: str):
    model = load_model(trained[name])
    return model.eval()
