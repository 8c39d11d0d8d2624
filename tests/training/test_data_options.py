"""The trainer with event datasets (one frame per time step) and with batch augmentation."""

import json

import numpy as np
import pytest
import torch

from spikeshield.cli import main
from spikeshield.errors import UsageError
from spikeshield.training import TrainConfig, train
from spikeshield.training.checkpoint import load_tensors

from ..data.formats import nmnist_bytes


def _synthetic_nmnist(root, train_per_class=8, test_per_class=3):
    """N-MNIST-format recordings whose class sets the band of columns the events fall in."""
    rng = np.random.default_rng(0)
    for split, count in (("Train", train_per_class), ("Test", test_per_class)):
        for digit in range(10):
            folder = root / "NMNIST" / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                n = 200
                x = rng.integers(digit * 3, digit * 3 + 3, n)
                data = nmnist_bytes(
                    x, rng.integers(0, 34, n), np.sort(rng.integers(0, 3 * 10**5, n)), rng.integers(0, 2, n)
                )
                (folder / f"{i:05d}.bin").write_bytes(data)
    return root


def test_event_dataset_frames_follow_time_steps_and_it_learns(tmp_path):
    root = _synthetic_nmnist(tmp_path / "data")
    config = TrainConfig(
        dataset="nmnist",
        model="mlp",
        model_options={"hidden": [64]},
        time_steps=3,
        epochs=4,
        batch_size=16,
        data_root=str(root),
    )
    metrics = train(config, tmp_path / "run", log=lambda m: None)
    assert metrics["time_steps"] == 3 and metrics["dataset_split"] == "official"
    assert metrics["test_accuracy"] > 0.5  # chance 0.1: the event pipeline carries the class
    spec = json.loads((tmp_path / "run" / "config.json").read_text())["model_spec"]
    assert spec["encoder"] == "events"
    with pytest.raises(UsageError, match="frames=5 differs from time_steps=3.*--time-steps 5"):
        train(
            TrainConfig(dataset="nmnist", time_steps=3, data_root=str(root), dataset_options={"frames": 5}),
            tmp_path / "bad",
            log=lambda m: None,
        )


def _digits_config(**overrides):
    base = dict(
        dataset="digits",
        model="mlp",
        model_options={"hidden": [64]},
        time_steps=2,
        epochs=2,
        batch_size=64,
        augment=["crop:1", "flip"],
    )
    base.update(overrides)
    return TrainConfig(**base)


def test_augmented_training_is_seeded_and_differs_from_plain(tmp_path):
    a = train(_digits_config(), tmp_path / "a", log=lambda m: None)
    train(_digits_config(), tmp_path / "b", log=lambda m: None)
    train(_digits_config(augment=[]), tmp_path / "c", log=lambda m: None)
    wa, _ = load_tensors(tmp_path / "a" / "model.safetensors")
    wb, _ = load_tensors(tmp_path / "b" / "model.safetensors")
    wc, _ = load_tensors(tmp_path / "c" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert a["test_accuracy"] > 0.3  # chance 0.1; flipped digits make 2 epochs at T = 2 hard
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["train"]["augment"] == ["crop:1", "flip"]


def test_augment_setting_is_validated():
    assert TrainConfig(augment="crop:4, flip").augment == ["crop:4", "flip"]
    with pytest.raises(UsageError, match="unknown augmentation 'blur'"):
        TrainConfig(augment=["blur"])
    with pytest.raises(UsageError, match="augment must be a list"):
        TrainConfig(augment=4)


def test_cli_augment_flag(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        ["train", "--dataset", "digits", "--model", "mlp", "--model-opt", "hidden=[32]", "-T", "2",
         "--augment", "crop:1", "flip,cutout:2", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    assert json.loads((out / "config.json").read_text())["train"]["augment"] == ["crop:1", "flip", "cutout:2"]
    assert main(["train", "--augment", "crop:x", "--out", str(tmp_path / "bad")]) == 2
    assert "'x' is not an integer" in capsys.readouterr().err
