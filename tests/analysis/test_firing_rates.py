import json

import pytest
import torch

from spikeshield.analysis.firing_rates import (
    exponential_lif_rate,
    if_rate,
    linear_lif_rate,
    rate_vs_leak,
    simulate_rates,
)
from spikeshield.cli import main
from spikeshield.errors import UsageError

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
