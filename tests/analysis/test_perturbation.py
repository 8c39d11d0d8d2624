"""The perturbation-gain analysis: operator norms, the stability bound, the command."""

import json
import math

import pytest
import torch
from torch import nn

from spikeshield.analysis.perturbation import layer_bounds, layer_gains, operator_norm, stages
from spikeshield.cli import main
from spikeshield.errors import UsageError
from spikeshield.models import build_model
from spikeshield.training import TrainConfig, train


def test_operator_norm_of_a_linear_layer_is_its_largest_singular_value():
    layer = nn.Linear(30, 20)
    expected = torch.linalg.matrix_norm(layer.weight.detach(), 2).item()
    assert operator_norm([layer], (30,)) == pytest.approx(expected, rel=1e-4)  # the bias plays no part


def test_operator_norm_of_conv_and_eval_batch_norm_matches_the_dense_matrix():
    torch.manual_seed(1)
    bn = nn.BatchNorm2d(3).eval()
    with torch.no_grad():
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
    chain = [nn.Conv2d(2, 3, 3, padding=1), bn, nn.AvgPool2d(2), nn.Flatten()]
    f = nn.Sequential(*chain)
    jacobian = torch.autograd.functional.jacobian(lambda v: f(v.view(1, 2, 4, 4)).flatten(), torch.zeros(32))
    expected = torch.linalg.matrix_norm(jacobian, 2).item()
    assert operator_norm(chain, (2, 4, 4)) == pytest.approx(expected, rel=1e-4)
    # a non-overlapping max pooling counts as 1: the product of the norms on either side
    pooled = [nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 5)]
    assert operator_norm(pooled, (2, 4, 4)) == pytest.approx(
        torch.linalg.matrix_norm(pooled[2].weight.detach(), 2).item(), rel=1e-4
    )


@pytest.mark.parametrize(
    ("name", "options"), [("mlp", {"hidden": [32, 16]}), ("vgg5", {"width": 8, "fc_hidden": 16})]
)
def test_every_measured_gain_is_within_the_stability_bound(name, options):
    """max_t ‖ε[t]‖ ≤ sqrt(1/(1−λ))·‖A‖₂·‖δ input‖ is a theorem: the measured gains must obey it,
    and the first layer's gain must be positive (the perturbation reaches it)."""
    torch.manual_seed(0)
    model = build_model(name, neuron="dlif", input_shape=(1, 8, 8), time_steps=4, **options)
    with torch.no_grad():  # strong input currents so that many neurons fire
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.mul_(3.0)
    model.eval()
    x = torch.rand(32, 1, 8, 8)
    x_pert = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    bounds = layer_bounds(model)
    gains = layer_gains(model, x, x_pert)
    assert len(bounds) == len(gains) == len(stages(model))
    for bound, gain in zip(bounds, gains, strict=True):
        measured = torch.nan_to_num(gain["gain"], nan=0.0)
        assert measured.max() <= bound["bound"] * (1 + 1e-4)
        assert bound["bound"] == pytest.approx(math.sqrt(1 / (1 - 0.99)) * bound["operator_norm"])
    # layer 1 by hand: δX[t] = A·δx at every step, so max_t ‖ε[t]‖ = (1 − λ^T)/(1 − λ)·‖A·δx‖,
    # and the input changed by sqrt(T)·‖δx‖ over the T steps
    assert model.norm_mean is None  # built without normalisation: layer 1 sees the stem only
    with torch.no_grad():
        delta_x = (model.stem(x_pert) - model.stem(x)).flatten(1).norm(dim=1)
    expected = (1 - 0.99**4) / (1 - 0.99) * delta_x / (2 * (x_pert - x).flatten(1).norm(dim=1))
    assert torch.allclose(gains[0]["gain"], expected, rtol=1e-4)


def test_models_that_are_not_a_chain_are_refused():
    with pytest.raises(UsageError, match="blocks"):
        stages(build_model("resnet19", neuron="lif", input_shape=(3, 8, 8), time_steps=2))
    with pytest.raises(UsageError, match="direct encoding"):
        stages(build_model("mlp", neuron="lif", input_shape=(1, 8, 8), time_steps=2, encoder="poisson"))


def test_a_neuron_without_a_multiplicative_leak_is_refused_saying_which_neurons_work():
    """It used to say 'give the training mode option decay=λ', an option analyze does not have."""
    with pytest.raises(UsageError) as err:
        stages(build_model("mlp", neuron="noisy-if", input_shape=(1, 8, 8), time_steps=1))
    message = str(err.value)
    assert message.startswith("perturbation analysis: layer 1's neuron 'noisy-if' has no membrane leak")
    assert "if, " in message and "lif" in message and "dlif" in message and "noisy-if," not in message
    assert "spikeshield convert --to multistep" in message and "decay=" not in message
    assert "\n" not in message
    with pytest.raises(UsageError, match="neuron 'linear-lif' has no membrane leak"):
        stages(build_model("mlp", neuron="linear-lif", input_shape=(1, 8, 8), time_steps=2))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    base = dict(dataset="digits", model="mlp", neuron="dlif", epochs=2, model_options={"hidden": [32]})
    for label, mode, rho in (("at-rho0", "at", 0.0), ("at-rho1", "at", 1.0)):
        config = TrainConfig(**base, mode=mode, mode_options={"rho": rho, "step": 0.1})
        train(config, root / label, log=lambda m: None)
    return root


def test_the_command_writes_json_and_a_figure_and_refuses_to_overwrite(two_runs, tmp_path, capsys):
    runs = [str(two_runs / "at-rho0"), str(two_runs / "at-rho1")]
    out = tmp_path / "analysis"
    args = ["analyze", "perturbation", "--run", *runs, "--out", str(out), "--samples", "40"]
    assert main([*args, "--note", "REDUCED (CPU budget)"]) == 0
    printed = capsys.readouterr().out
    assert "at-rho0: every measured gain is within its bound" in printed
    summary = json.loads((out / "perturbation.json").read_text())
    assert summary["note"] == "REDUCED (CPU budget)"
    assert [r["label"] for r in summary["runs"]] == ["at-rho0", "at-rho1"]
    first = summary["runs"][0]
    assert first["samples"] == 40 and first["settings"]["eps"] == 0.1  # 1-channel default
    assert set(first["perturbations"]) == {"gaussian σ=0.1", "pgd-10 ε=0.1"}
    assert all(row["within_bound"] for rows in first["perturbations"].values() for row in rows)
    assert (out / "perturbation.png").stat().st_size > 0
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err


def test_the_command_needs_runs(tmp_path, capsys):
    assert main(["analyze", "perturbation", "--out", str(tmp_path / "a")]) == 2
    assert "needs --run" in capsys.readouterr().err
    assert (
        main(["analyze", "perturbation", "--run", str(tmp_path / "missing"), "--out", str(tmp_path / "a")])
        == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_dropout_shared_over_time_is_an_identity_in_the_chain_check():
    """plifnet's SequenceDropout is the identity in evaluation: it is not refused as 'not a linear
    map' (found by a new-user trial); a layer that is not linear still is."""
    from torch import nn

    from spikeshield.analysis.perturbation import _check_chain
    from spikeshield.models.layers import SequenceDropout

    _check_chain([nn.Linear(3, 3), SequenceDropout(0.5)], 0)
    with pytest.raises(UsageError, match="ReLU, which is not a linear map"):
        _check_chain([nn.Linear(3, 3), nn.ReLU()], 0)
