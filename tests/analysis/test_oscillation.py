"""``spikeshield analyze oscillation``: membrane traces with and without the oscillation, and the
cosine between the input gradient a fake backward hands out and the true one (issue 15)."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from spikeshield.analysis.oscillation import gradient_cosines, membrane_traces
from spikeshield.cli import main
from spikeshield.models import build_model
from spikeshield.neurons import true_gradient
from spikeshield.training import TrainConfig, train

OSCILLATION = {"amplitude": 0.2, "frequency": 0.25}
FAKE = {"backward_amplitude": 4.0, "backward_frequency": 0.5, "backward_phase": 1.5707963}


def _model(**options):
    torch.manual_seed(0)
    return build_model(
        "cnn", neuron="oscillating-lif", input_shape=(1, 8, 8), time_steps=4, neuron_options=options
    ).eval()


def test_the_cosine_is_that_of_the_two_autograd_gradients_and_one_without_a_fake_backward():
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    model = _model(**OSCILLATION, **FAKE)
    cosines = gradient_cosines(model, x, y, batch_size=4)  # two batches

    def grad(x_one, y_one):
        x_var = x_one.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(x_var), y_one, reduction="sum"), x_var)
        return g.flatten()

    fake = [grad(x[i : i + 1], y[i : i + 1]) for i in range(6)]
    with true_gradient(model):
        true = [grad(x[i : i + 1], y[i : i + 1]) for i in range(6)]
    # written out: F.cosine_similarity's eps (1e-8 on the product of the norms) would swamp the
    # fake gradient here, whose norm is about 1e-11 (the fake oscillation shifts the surrogate far)
    by_hand = torch.stack([f @ t / (f.norm() * t.norm()) for f, t in zip(fake, true, strict=True)])
    torch.testing.assert_close(cosines, by_hand, atol=1e-5, rtol=1e-4)
    assert cosines.max() < 0.99  # the fake oscillation's gradient is another direction
    control = gradient_cosines(_model(**OSCILLATION), x, y)
    torch.testing.assert_close(control, torch.ones(6), atol=1e-5, rtol=0)


@pytest.mark.parametrize("target", ["membrane", "threshold"])
def test_traces_differ_at_the_first_step_by_the_oscillation(target):
    """From rest, H[0] = X[0]/τ (+ A·sin φ on the membrane): with φ = π/2 the two traces differ
    by exactly A at t = 0 (membrane) or not at all, the threshold moving instead."""
    model = _model(amplitude=0.3, frequency=0.25, phase=math.pi / 2, target=target)
    traces = membrane_traces(model, torch.rand(1, 1, 8, 8), count=3)
    assert len(traces["neurons"]) == 3 and traces["steps"] == [0, 1, 2, 3]
    on, off = traces["with_oscillation"]["potential"], traces["without_oscillation"]["potential"]
    for i in range(3):
        assert on[i][0] - off[i][0] == pytest.approx(0.3 if target == "membrane" else 0.0, abs=1e-6)
        assert traces["threshold"][i][0] == pytest.approx(1.3 if target == "threshold" else 1.0)
        assert traces["oscillation"][i][1] == pytest.approx(0.3 * math.cos(2 * math.pi * 0.25), abs=1e-6)
    assert 0.0 <= traces["changed_spike_trains"] <= 1.0


def test_a_random_phase_is_the_same_draw_for_both_traces():
    model = _model(amplitude=0.3, frequency=0.25, random_phase=True)
    image = torch.rand(1, 1, 8, 8)
    first, again = membrane_traces(model, image, seed=4), membrane_traces(model, image, seed=4)
    assert first == again
    on, off, osc = (
        first["with_oscillation"]["potential"],
        first["without_oscillation"]["potential"],
        first["oscillation"],
    )
    assert all(on[i][0] - off[i][0] == pytest.approx(osc[i][0], abs=1e-6) for i in range(len(on)))
    assert len({round(o[0], 6) for o in osc}) > 1  # a phase per neuron


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three runs of the same seed: the fake-backward defence, the same oscillation without it
    (the same weights: training follows the true gradient), and LIF."""
    root = tmp_path_factory.mktemp("runs")
    base = dict(dataset="digits", model="mlp", epochs=1, time_steps=4, model_options={"hidden": [32]})
    for label, neuron, options in (
        ("osc-fake", "oscillating-lif", {**OSCILLATION, **FAKE}),
        ("osc", "oscillating-lif", OSCILLATION),
        ("lif", "lif", {}),
    ):
        train(TrainConfig(**base, neuron=neuron, neuron_options=options), root / label, log=lambda _m: None)
    return root


def test_the_command_writes_json_and_two_figures_and_refuses_to_overwrite(runs, tmp_path, capsys):
    out = tmp_path / "analysis"
    args = ["analyze", "oscillation", "--run", str(runs / "osc-fake"), str(runs / "osc"), "--out", str(out)]
    assert main([*args, "--samples", "40", "--note", "REDUCED (CPU budget)"]) == 0
    printed = capsys.readouterr().out
    assert "osc-fake (fake backward): cosine(handed-out, true input gradient) over 40 test samples" in printed
    summary = json.loads((out / "oscillation.json").read_text())
    fake, control = summary["runs"]
    assert (
        summary["note"] == "REDUCED (CPU budget)" and fake["fake_backward"] and not control["fake_backward"]
    )
    assert len(fake["cosines"]) == fake["cosine"]["samples"] == 40
    assert control["cosine"]["min"] == pytest.approx(1.0, abs=1e-5)  # same weights, true gradient
    assert fake["cosine"]["median"] < 0.9
    assert len(fake["traces"]["with_oscillation"]["potential"]) == 4
    for name in ("oscillation_traces.png", "oscillation_cosine.png"):
        assert (out / name).stat().st_size > 0
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err


def test_a_run_without_oscillating_neurons_is_a_one_line_error(runs, tmp_path, capsys):
    assert main(["analyze", "oscillation", "--run", str(runs / "lif"), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "no oscillating neurons (neuron 'lif')" in err and err.count("\n") == 1
    assert not (tmp_path / "a").exists()
    assert main(["analyze", "oscillation", "--out", str(tmp_path / "a")]) == 2
    assert "needs --run" in capsys.readouterr().err
