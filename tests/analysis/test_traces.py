"""Learned k / tau traces: recorded per epoch by the trainer, gathered over seeds, drawn."""

import json

import pytest

from spikeshield.analysis.report import Entry
from spikeshield.analysis.traces import run_traces, trace_rows, write_traces
from spikeshield.training import TrainConfig, train


def _entry(seed, ks, neuron="klif"):
    """A KLIF run's entry whose two layers' k went through ``ks`` (and twice that); other
    neurons record nothing."""
    config = {
        "neuron": neuron,
        "neuron_options": {"k_init": 1.5} if neuron == "klif" else {},
        "time_steps": 2,
    }
    history = [
        {
            "epoch": i + 1,
            **(
                {"neuron_parameters": {"body.0": {"k": k}, "head_neuron": {"k": 2 * k}}}
                if neuron == "klif"
                else {}
            ),
        }
        for i, k in enumerate(ks)
    ]
    return Entry("mnist", "plifnet-T2", neuron, seed, f"r{seed}", {}, config, {"history": history})


def test_run_traces_start_from_the_configured_value():
    traces = run_traces(*(_entry(0, [1.2, 1.1]).config, _entry(0, [1.2, 1.1]).metrics))
    assert traces[("body.0", "k")] == [1.5, 1.2, 1.1]
    assert traces[("head_neuron", "k")] == [1.5, 2.4, 2.2]


def test_rows_are_mean_and_std_over_seeds_each_run_once():
    entries = [
        _entry(0, [1.2, 1.0]),
        _entry(1, [1.4, 1.2]),
        _entry(1, [1.4, 1.2]),
    ]  # r1 twice: two evaluations
    rows = trace_rows(entries)
    body = next(r for r in rows if r["layer"] == "body.0")
    assert body["seeds"] == 2 and body["epochs"] == [0, 1, 2]
    assert body["mean"] == pytest.approx([1.5, 1.3, 1.1])
    assert body["std"] == pytest.approx([0.0, 0.2 / 2**0.5, 0.2 / 2**0.5])  # sample std of two values


def test_write_traces_draws_only_what_was_learned(tmp_path):
    assert write_traces([_entry(0, [1.0], neuron="lif")], tmp_path, title="t") == []
    written = write_traces([_entry(0, [1.2]), _entry(1, [1.3])], tmp_path, title="t", reduced=["mnist"])
    assert {p.name for p in written} >= {"neuron_parameters.json", "k_trajectory.png"}
    assert not (tmp_path / "tau_trajectory.png").exists()
    saved = json.loads((tmp_path / "neuron_parameters.json").read_text())
    assert saved["reduced"] == ["mnist"] and len(saved["rows"]) == 2


def test_the_trainer_records_k_and_tau_per_layer_and_epoch(tmp_path):
    config = TrainConfig(dataset="digits", model="cnn", neuron="klif", neuron_options={"learnable_tau": True},
                         time_steps=2, epochs=2, limit_train=256, limit_test=64, device="cpu")  # fmt: skip
    metrics = train(config, tmp_path / "run", log=lambda _m: None)
    records = [h["neuron_parameters"] for h in metrics["history"]]
    assert len(records) == 2 and set(records[0]) == {"body.0", "body.2"}  # the cnn's two neuron layers
    assert set(records[0]["body.0"]) == {"k", "tau"}
    assert records[1]["body.0"]["k"] != records[0]["body.0"]["k"] != 1.0  # k moves
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["history"][1]["neuron_parameters"] == records[1]
    lif = TrainConfig(dataset="digits", model="cnn", neuron="lif", time_steps=2, limit_train=64, device="cpu")
    plain = train(lif, tmp_path / "lif", log=lambda _m: None)
    assert "neuron_parameters" not in plain["history"][0]


def test_a_resumed_run_keeps_the_learned_values_of_the_epochs_before_the_cut(tmp_path):
    """The checkpoint's history is read through its schema on resume: k must survive it."""
    config = TrainConfig(dataset="digits", model="cnn", neuron="klif", time_steps=2, epochs=2,
                         limit_train=128, limit_test=32, device="cpu")  # fmt: skip

    class Cut(Exception):
        pass

    def cut_after_first_epoch(message: str) -> None:
        if message.startswith("epoch 1/"):
            raise Cut

    with pytest.raises(Cut):
        train(config, tmp_path / "run", log=cut_after_first_epoch)
    metrics = train(config, tmp_path / "run", resume=True, log=lambda _m: None)
    assert [set(h["neuron_parameters"]) for h in metrics["history"]] == [{"body.0", "body.2"}] * 2
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["history"][0]["neuron_parameters"] == metrics["history"][0]["neuron_parameters"]
