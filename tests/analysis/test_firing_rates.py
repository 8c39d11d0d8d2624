import json

import pytest
import torch

from spikeshield.analysis.firing_rates import (
    exponential_lif_rate,
    if_rate,
    linear_lif_rate,
    model_firing_rates,
    rate_vs_leak,
    simulate_rates,
)
from spikeshield.cli import main
from spikeshield.errors import UsageError
from spikeshield.models import build_model
from spikeshield.neurons.base import SpikingNeuron

CURRENTS = [0.0373, 0.2373, 0.4873, 0.7373, 0.9873, 1.3373, 1.8373]


@pytest.mark.parametrize("leak", [0.0, 0.1, 0.35])
def test_linear_closed_form_matches_simulation(leak):
    sim = simulate_rates("linear-lif", torch.tensor(CURRENTS), 3000, leak=leak)
    for c, s in zip(CURRENTS, sim.tolist()):
        assert s == pytest.approx(linear_lif_rate(c, leak), abs=1e-3), c
    soft = simulate_rates("linear-lif", torch.tensor(CURRENTS), 3000, leak=leak, floor=None, reset="soft")
    for c, s in zip(CURRENTS, soft.tolist()):
        assert s == pytest.approx(linear_lif_rate(c, leak, floor=False), abs=1e-3), c


@pytest.mark.parametrize("tau", [1.5, 3.0, 10.0])
def test_exponential_and_if_closed_forms_match_simulation(tau):
    sim = simulate_rates("lif", torch.tensor(CURRENTS), 3000, tau=tau)
    assert sim.tolist() == pytest.approx([exponential_lif_rate(c, tau) for c in CURRENTS], abs=1e-3)
    sim_if = simulate_rates("if", torch.tensor(CURRENTS), 3000)
    assert sim_if.tolist() == pytest.approx([if_rate(c) for c in CURRENTS], abs=1e-3)


def test_rate_never_rises_with_leak_and_the_limits_of_the_claim():
    r = rate_vs_leak(currents=CURRENTS, leaks=(0.0, 0.1, 0.3), taus=(2.0, 8.0), steps=600, noise_std=0.3)
    f = r["findings"]
    assert f["linear_lif_vs_leak_constant_input"]["rises"] == []
    # below threshold the leak lowers the rate; above it the neuron fires every step regardless
    assert 0.4873 in f["linear_lif_vs_leak_constant_input"]["falls"]
    assert 1.3373 in f["linear_lif_vs_leak_constant_input"]["unchanged"]
    assert f["lif_vs_tau_constant_input"]["unchanged"][:3] == [0.0373, 0.2373, 0.4873]  # silent below V_th
    assert max(f["max_gap_simulated_vs_analytic"].values()) < 0.01
    assert all(len(r["linear_lif"][k]["random_input"]) == len(CURRENTS) for k in r["linear_lif"])


def test_bad_parameters_are_clear():
    with pytest.raises(UsageError, match="tau must be > 1"):
        rate_vs_leak(taus=(1.0,))
    with pytest.raises(UsageError, match="leak must be >= 0"):
        rate_vs_leak(leaks=(-0.1,))


def test_cli_writes_json_and_png(tmp_path, capsys):
    out = tmp_path / "rvl"
    args = ["analyze", "rate-vs-leak", "--out", str(out), "--leaks", "0", "0.2", "--taus", "2", "4"]
    assert main([*args, "--time-steps", "200"]) == 0
    printed = capsys.readouterr().out
    assert "linear_lif as leak grows" in printed
    data = json.loads((out / "rate_vs_leak.json").read_text())
    assert set(data["linear_lif"]) == {"0.0", "0.2"} and data["steps"] == 200
    assert (out / "rate_vs_leak.png").read_bytes()[:4] == b"\x89PNG"
    # an earlier analysis is not replaced unless asked
    before = (out / "rate_vs_leak.json").read_bytes()
    assert main([*args, "--time-steps", "100"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert (out / "rate_vs_leak.json").read_bytes() == before
    # the old flag still works, with a deprecation warning
    assert main([*args, "--steps", "100", "--overwrite"]) == 0
    assert "--steps is deprecated, use --time-steps" in capsys.readouterr().err
    assert json.loads((out / "rate_vs_leak.json").read_text())["steps"] == 100


# ---------------------------------------------------------------------------- trained-model rates
def _mnist_slice(root, n=48):
    from spikeshield.data import load_dataset

    return load_dataset("mnist", "test", root, limit=n)


def _layer_spikes_by_hand(model, x):
    """The mlp's spikes per neuron layer, run step by step outside the model's forward."""
    y = model.stem(model_input(model, x))
    seq = y.unsqueeze(0).expand(model.time_steps, *y.shape)
    spikes = []
    for module in model.body:
        seq = module(seq)
        if isinstance(module, SpikingNeuron):
            spikes.append(seq)
    return spikes


def model_input(model, x):
    return (x - model.norm_mean) / model.norm_std


def test_model_rates_equal_the_spikes_counted_by_hand(shared_data):
    torch.manual_seed(0)
    model = build_model("mlp", neuron="linear-lif", hidden=[64, 32], normalize=((0.13,), (0.31,)))
    with torch.no_grad():  # a bias so that both layers fire at visibly different rates
        model.stem[1].weight.mul_(3.0)
    data = _mnist_slice(shared_data)
    rates = model_firing_rates(model.eval(), data, batch_size=10)
    x, _ = data.tensors()
    with torch.no_grad():
        by_hand = _layer_spikes_by_hand(model, x)
    per_layer = [float(s.double().mean()) for s in by_hand]
    assert [layer["rate"] for layer in rates["layers"]] == pytest.approx(per_layer, rel=1e-9)
    assert [layer["name"] for layer in rates["layers"]] == ["body.0", "body.2"]
    assert [layer["neurons"] for layer in rates["layers"]] == [64, 32]
    total = sum(float(s.sum()) for s in by_hand)
    assert rates["mean"] == pytest.approx(total / (4 * len(data) * 96), rel=1e-9)
    assert rates["spikes_per_sample"] == pytest.approx(total / len(data), rel=1e-9)
    assert (rates["samples"], rates["time_steps"], rates["neurons"]) == (len(data), 4, 96)
    assert 0 < per_layer[1] < per_layer[0] < 1  # a real measurement, not a constant


def test_model_rates_leave_the_model_as_it_was_and_do_not_depend_on_the_batch(shared_data):
    torch.manual_seed(0)
    # stochastic: Poisson input spikes, so the per-sample streams must make the figure batch-free
    model = build_model("mlp", neuron="if", hidden=[64, 32], encoder="poisson").train()
    with torch.no_grad():
        model.stem[1].weight.mul_(3.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = _mnist_slice(shared_data, 30)
    first = model_firing_rates(model, data, batch_size=30, seed=3)
    assert first["mean"] > 0.01
    assert model_firing_rates(model, data, batch_size=7, seed=3) == first  # spike counts: exact
    assert model_firing_rates(model, data, batch_size=30, seed=4)["mean"] != first["mean"]
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks for m in model.modules())


def test_model_rates_refuse_a_model_without_neurons_and_an_empty_set(shared_data):
    data = _mnist_slice(shared_data, 4)
    with pytest.raises(UsageError, match="no spiking neuron"):
        model_firing_rates(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)), data)
    model = build_model("mlp", neuron="if", hidden=[16])
    with pytest.raises(UsageError, match="empty dataset"):
        model_firing_rates(model, _empty(data))


def _empty(data):
    from spikeshield.data.base import ArrayDataset

    return ArrayDataset(data.images[:0], data.labels[:0])
