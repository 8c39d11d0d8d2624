import json

import pytest
import torch

from spikeshield.errors import SpikeshieldError, UsageError
from spikeshield.training import TrainConfig, accuracy, build_model_for, load_model_weights, train
from spikeshield.training.checkpoint import load_tensors


def quick_config(**overrides) -> TrainConfig:
    base = dict(
        dataset="digits",
        model="mlp",
        neuron="lif",
        epochs=2,
        batch_size=64,
        lr=3e-3,
        time_steps=2,
        model_options={"hidden": [64]},
    )
    base.update(overrides)
    return TrainConfig(**base)


def test_training_learns_digits_and_writes_the_run_folder(tmp_path):
    metrics = train(
        quick_config(epochs=4, model="cnn", model_options={}), tmp_path / "run", log=lambda m: None
    )
    assert metrics["test_accuracy"] > 0.85  # chance is 0.10
    assert metrics["complete"] and metrics["epochs"] == 4 and len(metrics["history"]) == 4
    assert metrics["train_seconds"] > 0 and metrics["images_per_second"] > 0
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "metrics.json", "model.safetensors", "checkpoint.safetensors"} <= files
    assert not any(name.endswith(".tmp") for name in files)
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["test_accuracy"] == metrics["test_accuracy"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    # the saved weights reproduce the reported accuracy
    cfg = TrainConfig.from_dict(config["train"])
    model = build_model_for(cfg)
    load_model_weights(tmp_path / "run" / "model.safetensors", model, model.spec)
    from spikeshield.data import load_dataset

    assert accuracy(model, load_dataset("digits", "test")) == metrics["test_accuracy"]


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    train(quick_config(), tmp_path / "a", log=lambda m: None)
    train(quick_config(), tmp_path / "b", log=lambda m: None)
    train(quick_config(seed=1), tmp_path / "c", log=lambda m: None)
    a, _ = load_tensors(tmp_path / "a" / "model.safetensors")
    b, _ = load_tensors(tmp_path / "b" / "model.safetensors")
    c, _ = load_tensors(tmp_path / "c" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


class Interrupt(Exception):
    pass


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    config = quick_config(epochs=3, encoder="poisson", normalize=False)  # poisson: RNG state matters too
    full = train(config, tmp_path / "full", log=lambda m: None)

    def stop_after_first_epoch(message: str) -> None:
        if message.startswith("epoch 1/"):
            raise Interrupt

    with pytest.raises(Interrupt):
        train(config, tmp_path / "cut", log=stop_after_first_epoch)
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    resumed = train(config, tmp_path / "cut", resume=True, log=lambda m: None)
    a, _ = load_tensors(tmp_path / "full" / "model.safetensors")
    b, _ = load_tensors(tmp_path / "cut" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["test_accuracy"] == full["test_accuracy"]
    strip = lambda h: [{k: v for k, v in e.items() if "second" not in k} for e in h]  # noqa: E731
    assert strip(resumed["history"]) == strip(full["history"])
    # resuming a complete run does nothing
    assert (
        train(config, tmp_path / "cut", resume=True, log=lambda m: None)["test_accuracy"]
        == full["test_accuracy"]
    )


def test_existing_run_is_never_overwritten(tmp_path):
    train(quick_config(epochs=1), tmp_path / "r", log=lambda m: None)
    before = (tmp_path / "r" / "model.safetensors").read_bytes()
    with pytest.raises(UsageError, match="already holds a run.*--resume"):
        train(quick_config(epochs=1), tmp_path / "r", log=lambda m: None)
    with pytest.raises(UsageError, match="other settings.*lr"):
        train(quick_config(epochs=1, lr=0.1), tmp_path / "r", resume=True, log=lambda m: None)
    assert (tmp_path / "r" / "model.safetensors").read_bytes() == before


def test_resuming_a_finished_run_whose_weights_were_deleted_is_the_missing_weights_error(tmp_path, capsys):
    """It printed "run already complete ... wrote <run>" and exited 0 with no weights written
    (new-user trial): now the same one-line CheckpointError as evaluate, exit 1."""
    from spikeshield.cli import main
    from spikeshield.errors import CheckpointError

    config = quick_config(epochs=1)
    train(config, tmp_path / "r", log=lambda m: None)
    (tmp_path / "r" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="weights file model.safetensors is missing"):
        train(config, tmp_path / "r", resume=True, log=lambda m: None)
    capsys.readouterr()
    args = ["train", "--dataset", "digits", "--model", "mlp", "--model-opt", "hidden=[64]", "-T", "2",
            "--epochs", "1", "--batch-size", "64", "--lr", "3e-3", "--out", str(tmp_path / "r")]  # fmt: skip
    args.append("--resume")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.safetensors is missing, though its training finished" in err
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_a_failed_run_removes_every_folder_it_created_and_no_other(tmp_path):
    """'train --out a/b/c' that failed once the folders were made left a/b behind (new-user trial)."""
    config = quick_config(dataset="mnist", data_root=str(tmp_path / "no-data"), epochs=1)
    with pytest.raises(SpikeshieldError, match="not found"):
        train(config, tmp_path / "a" / "b" / "c", log=lambda m: None)
    assert not any(tmp_path.iterdir())
    (tmp_path / "a").mkdir()  # a folder that was there is the user's: kept
    with pytest.raises(SpikeshieldError, match="not found"):
        train(config, tmp_path / "a" / "b" / "c", log=lambda m: None)
    assert [p.name for p in tmp_path.rglob("*")] == ["a"]


def test_voting_readout_with_rate_mse_learns(tmp_path):
    metrics = train(quick_config(readout="voting", epochs=3), tmp_path / "v", log=lambda m: None)
    assert metrics["test_accuracy"] > 0.4  # chance 0.1; MSE on rates learns slowly at T = 2
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"] < 0.1


def test_sgd_with_cross_entropy_learns(tmp_path):
    metrics = train(quick_config(optimizer="sgd", lr=0.1, epochs=3), tmp_path / "s", log=lambda m: None)
    assert metrics["test_accuracy"] > 0.8


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"time_steps": 0}, "time_steps must be a positive integer"),
        ({"epochs": -1}, "epochs"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"lr": float("nan")}, "finite"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of"),
        ({"loss": "hinge"}, "loss must be one of"),
        ({"device": "tpu"}, "device must be one of"),
        ({"batch_size": 2.5}, "batch_size"),
    ],
)
def test_bad_training_settings_are_clear(overrides, message):
    with pytest.raises(UsageError, match=message):
        quick_config(**overrides)


def test_cuda_without_gpu_is_clear(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UsageError, match="no CUDA GPU"):
        train(quick_config(device="cuda"), tmp_path / "x", log=lambda m: None)


def test_run_saved_before_a_new_setting_still_resumes(tmp_path):
    config = quick_config(epochs=1)
    train(config, tmp_path / "r", log=lambda m: None)
    path = tmp_path / "r" / "config.json"
    saved = json.loads(path.read_text())
    del saved["train"]["augment"]  # as written by a version without that setting
    path.write_text(json.dumps(saved))
    assert train(config, tmp_path / "r", resume=True, log=lambda m: None)["complete"]
    # the data reached by another path is the same run
    moved = quick_config(epochs=1, data_root=str(tmp_path))
    assert train(moved, tmp_path / "r", resume=True, log=lambda m: None)["complete"]
    with pytest.raises(UsageError, match=r"other settings \(lr\)"):
        train(quick_config(epochs=1, lr=0.5), tmp_path / "r", resume=True, log=lambda m: None)


def test_a_fake_gradient_neuron_is_trained_through_its_true_forward(tmp_path):
    """The oscillation defence hands only the attacker the fake neuron's gradient: training the
    defended model gives bit for bit the weights of the same model without the fake backward."""
    options = {"amplitude": 0.2, "frequency": 0.25}
    fake = {**options, "backward_amplitude": 4.0, "backward_frequency": 0.5, "backward_phase": 1.5707963}
    train(
        quick_config(neuron="oscillating-lif", neuron_options=options), tmp_path / "true", log=lambda m: None
    )
    train(quick_config(neuron="oscillating-lif", neuron_options=fake), tmp_path / "fake", log=lambda m: None)
    a, _ = load_tensors(tmp_path / "true" / "model.safetensors")
    b, _ = load_tensors(tmp_path / "fake" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
