"""The noisy and ann2snn training modes and spikeshield convert: converted runs are normal run
folders (load_run, evaluate), record how they were made, resume, and refuse what they cannot do."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import spikeshield
from spikeshield.cli import main
from spikeshield.errors import UsageError
from spikeshield.experiments.pipeline import EvalSettings, evaluate
from spikeshield.models.conversion import neurons_of, to_multistep
from spikeshield.runs import load_model, read_config
from spikeshield.training import TrainConfig, load_tensors, train
from spikeshield.training.conversion import CONVERSION_FILE, SOURCE_DIR, convert_run, converted_config
from spikeshield.training.modes import build_training_mode

IF_SOFT = {"reset": "soft", "v_init": 0.5}


def config(mode: str, **overrides) -> TrainConfig:
    base = dict(
        dataset="digits",
        model="mlp",
        model_options={"hidden": [64]},
        neuron="if",
        neuron_options=IF_SOFT,
        time_steps=8,
        epochs=2,
        batch_size=64,
        mode=mode,
        mode_options={"sweep": [1, 4, 16]},
        limit_test=120,
    )
    return TrainConfig(**{**base, **overrides})


def quiet(_message: str) -> None:
    pass


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("conversion")
    for mode in ("noisy", "ann2snn"):
        train(config(mode), root / mode, log=quiet)
    return root


@pytest.mark.parametrize("mode", ["noisy", "ann2snn"])
def test_a_conversion_mode_writes_a_normal_run_of_if_neurons(runs, mode):
    run = runs / mode
    model, cfg, test_set = spikeshield.load_run(run, limit=120)  # the run's own test subset
    assert cfg == config(mode) and model.time_steps == 8
    assert {n.name for n in neurons_of(model)} == {"if"}
    assert all(n.reset_mode == "soft" and n.v_init == 0.5 for n in neurons_of(model))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["complete"] and metrics["time_steps"] == 8 and metrics["neuron"] == "if"
    x, y = test_set.tensors()
    with torch.no_grad():
        assert int((model(x).argmax(1) == y).sum()) / len(y) == metrics["test_accuracy"]
    assert metrics["test_accuracy"] > 0.5  # 2 epochs on digits; chance is 0.1
    record = json.loads((run / CONVERSION_FILE).read_text())
    source = read_config(run / SOURCE_DIR)
    assert source.neuron == ("noisy-if" if mode == "noisy" else "relu") and source.time_steps == 1
    assert source.mode == "bptt" and record["source_config"] == source.to_dict()
    assert [(r["time_steps"], r["v_init"]) for r in record["sweep"]] == [(1, 0.5), (4, 0.5), (16, 0.5)]
    assert all(0 <= r["accuracy"] <= 1 for r in record["sweep"])
    if mode == "ann2snn":
        assert len(record["lambdas"]) == 1 and record["lambdas"][0] > 0 and record["percentile"] == 99.9


def test_the_noisy_run_is_the_converted_source(runs):
    """The run's weights are the noisy source's, unchanged, in soft-reset IF neurons."""
    source = load_model(runs / "noisy" / SOURCE_DIR)
    expected = to_multistep(source, 8)
    model = load_model(runs / "noisy")
    x = torch.rand(16, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), expected(x))


def test_the_sweep_at_the_runs_own_n_repeats_its_accuracy(tmp_path):
    train(config("noisy", mode_options={"sweep": [8], "sweep_v_init": [0.0]}), tmp_path / "r", log=quiet)
    record = json.loads((tmp_path / "r" / CONVERSION_FILE).read_text())
    own = [r for r in record["sweep"] if r["v_init"] == 0.5]
    assert own == [{"time_steps": 8, "v_init": 0.5, "accuracy": record["test_accuracy"]}]
    assert [r["v_init"] for r in record["sweep"]] == [0.5, 0.0]


def test_converted_runs_are_evaluated_like_any_run(runs, tmp_path):
    settings = EvalSettings(attacks=("pgd",), eps=(0.0, 0.3), attack_options={"steps": 3}, limit=40,
                            noises={"gaussian": (0.0, 0.2)}, check_samples=20)  # fmt: skip
    done = evaluate(runs / "ann2snn", settings, out_dir=tmp_path / "ev", log=quiet)
    records = done.result["records"]
    clean = next(r["accuracy"] for r in records if r.get("attack") and r["eps"] == 0)
    assert clean == next(r["accuracy"] for r in records if r.get("noise") and r["level"] == 0)
    assert next(r["accuracy"] for r in records if r.get("attack") and r["eps"] == 0.3) < clean


def test_a_complete_conversion_run_resumes_to_itself_and_is_never_overwritten(runs):
    before = (runs / "noisy" / "model.safetensors").read_bytes()
    again = train(config("noisy"), runs / "noisy", resume=True, log=quiet)
    assert again == json.loads((runs / "noisy" / "metrics.json").read_text())
    with pytest.raises(UsageError, match="already holds a run"):
        train(config("noisy"), runs / "noisy", log=quiet)
    assert (runs / "noisy" / "model.safetensors").read_bytes() == before


def test_an_interrupted_source_training_resumes(tmp_path):
    """A run stopped during its source training continues it; the result equals an
    uninterrupted run's."""

    class Stop(Exception):
        pass

    def stop_after_first_epoch(message: str) -> None:
        if message.startswith("epoch 1/"):
            raise Stop

    with pytest.raises(Stop):
        train(config("noisy"), tmp_path / "cut", log=stop_after_first_epoch)
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    train(config("noisy"), tmp_path / "cut", resume=True, log=quiet)
    train(config("noisy"), tmp_path / "whole", log=quiet)
    for name in ("model.safetensors", f"{SOURCE_DIR}/model.safetensors"):
        (a, meta_a), (b, meta_b) = (load_tensors(tmp_path / r / name) for r in ("cut", "whole"))
        assert meta_a == meta_b and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the file hash is not compared: safetensors writes its metadata in a per-process order
    drop = ("seconds", "environment", "source_run", "source_weights_sha256")
    records = [json.loads((tmp_path / r / CONVERSION_FILE).read_text()) for r in ("cut", "whole")]
    kept = [{k: v for k, v in r.items() if k not in drop} for r in records]
    assert kept[0] == kept[1]


@pytest.mark.parametrize(
    ("mode", "overrides", "message"),
    [
        ("noisy", {"neuron": "lif", "neuron_options": {}}, "into soft-reset IF neurons: set neuron = 'if'"),
        ("ann2snn", {"neuron_options": {"reset": "hard"}}, "set reset = 'soft'"),
        ("noisy", {"mode_options": {"noise": "poisson"}}, "noise must be one of"),
        ("noisy", {"mode_options": {"v_threshold": 2.0}}, "does not take option.*v_threshold"),
        ("noisy", {"mode_options": {"sweep": [4, 0]}}, "sweep time steps must be a positive integer"),
        ("ann2snn", {"mode_options": {"percentile": 101}}, r"percentile must be in \(0, 100\]"),
        ("ann2snn", {"mode_options": {"sweep_v_init": [1.0]}}, r"sweep_v_init must be in \[0, 1\)"),
    ],
)
def test_bad_mode_settings_are_refused_before_any_work(mode, overrides, message):
    with pytest.raises(UsageError, match=message):
        config(mode, **overrides)


def test_the_source_settings_round_trip_through_a_conversion():
    noisy_source = dataclasses.replace(
        config("bptt", neuron="noisy-if", neuron_options={"noise": "uniform"}, mode_options={}), time_steps=1
    )
    converted = converted_config(noisy_source, "multistep", 16, v_init=0.0, options={"sweep": [2]})
    assert converted.neuron == "if" and converted.time_steps == 16
    assert converted.neuron_options == {"reset": "soft", "v_threshold": 1.0, "v_init": 0.0}
    assert converted.mode == "noisy" and converted.mode_options == {"noise": "uniform", "sweep": [2]}
    rebuilt = build_training_mode(converted.mode, converted.mode_options).source_config(converted)
    assert rebuilt.neuron == "noisy-if" and rebuilt.neuron_options == {"noise": "uniform", "v_threshold": 1.0}
    assert dataclasses.replace(rebuilt, neuron_options={"noise": "uniform"}) == noisy_source


def test_convert_cli_converts_a_separately_trained_run(tmp_path, capsys):
    args = ["train", "--dataset", "digits", "--model", "mlp", "--model-opt", "hidden=[32]", "--epochs", "1"]
    assert main([*args, "--neuron", "relu", "--time-steps", "1", "--out", str(tmp_path / "ann")]) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "ann").iterdir()}
    out = tmp_path / "snn"
    code = main(["convert", "--run", str(tmp_path / "ann"), "--to", "ann2snn", "-T", "32", "--out", str(out),
                 "--percentile", "100", "--sweep", "2", "64"])  # fmt: skip
    assert code == 0 and "test accuracy" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in (tmp_path / "ann").iterdir()} == before  # the source is only read
    cfg = read_config(out)
    assert cfg.mode == "ann2snn" and cfg.mode_options["percentile"] == 100 and cfg.time_steps == 32
    record = json.loads((out / CONVERSION_FILE).read_text())
    assert record["source_run"] == str(tmp_path / "ann")
    assert [r["time_steps"] for r in record["sweep"]] == [2, 64]
    evaluate_args = ["--noise", "gaussian", "--levels", "0", "0.1", "--limit", "30"]
    assert main(["evaluate", "--run", str(out), *evaluate_args]) == 0


def test_convert_run_refuses_what_it_cannot_record(tmp_path):
    train(config("bptt", neuron="noisy-if", neuron_options={}, time_steps=1, mode_options={}, epochs=1),
          tmp_path / "noisy", log=quiet)  # fmt: skip
    with pytest.raises(UsageError, match="converts a run of 'relu' units; this run's neuron is 'noisy-if'"):
        convert_run(tmp_path / "noisy", tmp_path / "x", "ann2snn", 8)
    with pytest.raises(UsageError, match="unknown conversion 'multi'"):
        convert_run(tmp_path / "noisy", tmp_path / "x", "multi", 8)
    convert_run(tmp_path / "noisy", tmp_path / "ms", "multistep", 8, log=quiet)
    with pytest.raises(UsageError, match="already holds a run"):
        convert_run(tmp_path / "noisy", tmp_path / "ms", "multistep", 8, log=quiet)
    assert not (tmp_path / "x").exists()


def test_ann2snn_of_a_relu_run_trained_at_more_than_one_step_names_the_rule():
    """It said "cannot record how this run was trained; convert it in Python" (new-user trial)."""
    relu = config("bptt", neuron="relu", neuron_options={}, mode_options={})
    relu_t4 = dataclasses.replace(relu, time_steps=4)
    with pytest.raises(UsageError, match="needs a relu run trained at T = 1; this one has T = 4") as info:
        converted_config(relu_t4, "ann2snn", 8)
    assert "\n" not in str(info.value)


def test_a_residual_network_is_refused_before_its_source_is_trained(tmp_path):
    cfg = config("ann2snn", model="resnet19", model_options={})
    with pytest.raises(UsageError, match="cannot convert layer .*SpikingBasicBlock"):
        train(cfg, tmp_path / "res", log=quiet)
    assert not (tmp_path / "res").exists()
