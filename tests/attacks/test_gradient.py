import pytest
import torch
from torch import nn

from spikeshield.attacks import Oracle, rate_gradient, resolve_gradient, swap_surrogate
from spikeshield.attacks.gradient import GradientSpec, attacker_gradient, parse_gradient_spec
from spikeshield.attacks.oracle import cross_entropy_loss
from spikeshield.errors import UsageError
from spikeshield.models import build_model
from spikeshield.neurons import SpikingNeuron, build_neuron
from spikeshield.neurons.surrogates import ATan, Sigmoid


def test_gradient_names_parse_and_round_trip():
    assert parse_gradient_spec("bptt") == GradientSpec()
    spec = parse_gradient_spec("true+surrogate:atan:3")
    assert (
        spec == GradientSpec(surrogate="atan:3", true_forward=True) and spec.name == "true+surrogate:atan:3"
    )
    assert parse_gradient_spec(spec.name) == spec
    assert parse_gradient_spec("BPTR").name == "bptr"
    assert parse_gradient_spec("surrogate:sigmoid").surrogate == "sigmoid:4"  # the default parameter


@pytest.mark.parametrize(
    "text, message",
    [
        ("magic", "unknown gradient 'magic'"),
        ("surrogate:nope", "unknown surrogate"),
        ("surrogate:atan:2+surrogate:sigmoid:1", "two surrogates"),
        ("bptr+true", "bptr uses no surrogate"),
        ("surrogate:atan:-1", "must be > 0"),
        ("", "non-empty"),
    ],
)
def test_bad_gradient_names_are_clear(text, message):
    with pytest.raises(UsageError, match=message):
        resolve_gradient(text)


def test_adaptive_expands_and_adds_true_for_fake_gradient_models():
    plain = build_model("mlp", neuron="lif", input_shape=(1, 4, 4), time_steps=2, hidden=[8])
    members = [m.name for m in resolve_gradient("adaptive", plain).members]
    assert members[0] == "bptt" and "bptr" in members and len(members) == len(set(members)) >= 4
    assert not any(m.startswith("true") for m in members)
    defended = build_model(
        "mlp",
        neuron="oscillating-lif",
        neuron_options={"amplitude": 0.3, "backward_amplitude": 0.0},
        input_shape=(1, 4, 4),
        time_steps=2,
        hidden=[8],
    )
    members = [m.name for m in resolve_gradient("adaptive", defended).members]
    assert "true" in members and "true+surrogate:sigmoid:1" in members
    chosen = resolve_gradient("adaptive:bptt,bptr", defended)
    assert chosen.name == "adaptive:bptt,bptr" and [m.name for m in chosen.members] == ["bptt", "bptr"]


def _input_grad(model: nn.Module, x: torch.Tensor, spec: GradientSpec) -> torch.Tensor:
    y = torch.zeros(len(x), dtype=torch.long)
    _, grad, _ = Oracle(model, spec).loss_and_grad(x, y, cross_entropy_loss)
    return grad


def test_swapping_the_surrogate_changes_only_the_backward_and_is_always_restored():
    torch.manual_seed(0)
    model = build_model("mlp", neuron="lif", input_shape=(1, 6, 6), time_steps=4, hidden=[32]).eval()
    x = torch.rand(8, 1, 6, 6)
    own = [n.surrogate for n in model.modules() if isinstance(n, SpikingNeuron)]
    with torch.no_grad():
        before = model(x)
    with swap_surrogate(model, "atan:0.5") as count:
        assert count == len(own) and all(
            isinstance(n.surrogate, ATan) for n in model.modules() if isinstance(n, SpikingNeuron)
        )
        with torch.no_grad():
            assert torch.equal(model(x), before)  # same forward, bit for bit
    assert [n.surrogate for n in model.modules() if isinstance(n, SpikingNeuron)] == own
    g_own = _input_grad(model, x, GradientSpec())
    g_other = _input_grad(model, x, GradientSpec(surrogate="atan:0.5"))
    assert not torch.allclose(g_own, g_other)
    with pytest.raises(RuntimeError, match="boom"), swap_surrogate(model, "rectangle:2"):
        raise RuntimeError("boom")
    assert all(isinstance(n.surrogate, Sigmoid) for n in model.modules() if isinstance(n, SpikingNeuron))


def test_bptr_backward_is_the_documented_rate_equation():
    """∂L/∂X[t] = (1/T)·1[r > 0]/V_th·Σ_t' ∂L/∂S[t'] for every t, forward unchanged."""
    torch.manual_seed(0)
    neuron = build_neuron("if", v_threshold=0.8)
    wrapper = nn.Sequential(neuron)
    x = (torch.rand(5, 3, 7) * 1.2 - 0.2).requires_grad_(True)
    w = torch.randn(5, 3, 7)
    with rate_gradient(wrapper) as count:
        assert count == 1 and "forward" in vars(neuron)
        spikes = wrapper(x)
        (spikes * w).sum().backward()
    assert "forward" not in vars(neuron)  # restored
    assert torch.equal(spikes.detach(), neuron(x.detach()))
    rate = spikes.detach().mean(0)
    expected = ((rate > 0).float() / 0.8 * w.sum(0) / 5).expand(5, 3, 7)
    torch.testing.assert_close(x.grad, expected)


def test_every_gradient_mode_keeps_the_forward_bit_identical():
    torch.manual_seed(1)
    model = build_model(
        "cnn",
        neuron="oscillating-lif",
        neuron_options={"amplitude": 0.3, "backward_amplitude": 0.0},
        input_shape=(1, 8, 8),
        time_steps=3,
        channels=4,
    ).eval()
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        reference = model(x)
    for name in ("bptt", "bptr", "true", "surrogate:triangle:0.5", "true+surrogate:atan:2"):
        spec = parse_gradient_spec(name)
        with attacker_gradient(model, spec), torch.no_grad():
            assert torch.equal(model(x), reference), name


def test_true_gradient_differs_from_the_fake_one_on_the_oscillation_defence():
    torch.manual_seed(2)
    options = {"amplitude": 0.4, "frequency": 0.25, "backward_amplitude": 0.0}
    model = build_model(
        "mlp",
        neuron="oscillating-lif",
        neuron_options=options,
        input_shape=(1, 6, 6),
        time_steps=4,
        hidden=[32],
    ).eval()
    honest = build_model(
        "mlp",
        neuron="oscillating-lif",
        neuron_options={"amplitude": 0.4, "frequency": 0.25},
        input_shape=(1, 6, 6),
        time_steps=4,
        hidden=[32],
    ).eval()
    honest.load_state_dict(model.state_dict())
    x = torch.rand(6, 1, 6, 6)
    fake = _input_grad(model, x, GradientSpec())
    true = _input_grad(model, x, GradientSpec(true_forward=True))
    assert not torch.allclose(fake, true)
    torch.testing.assert_close(true, _input_grad(honest, x, GradientSpec()))  # = the undefended neuron's


def test_eot_averages_independent_passes_of_a_stochastic_model():
    model = build_model("mlp", neuron="noisy-if", input_shape=(1, 4, 4), time_steps=1, hidden=[16]).eval()
    x = torch.rand(5, 1, 4, 4)
    y = torch.zeros(5, dtype=torch.long)
    torch.manual_seed(3)
    _, averaged, _ = Oracle(model, eot_samples=4).loss_and_grad(x, y, cross_entropy_loss)
    torch.manual_seed(3)
    singles = [Oracle(model).loss_and_grad(x, y, cross_entropy_loss)[1] for _ in range(4)]
    torch.testing.assert_close(averaged, torch.stack(singles).mean(0))
    assert not torch.allclose(singles[0], singles[1])  # the passes really differ
    with pytest.raises(UsageError, match="EOT samples"):
        Oracle(model, eot_samples=0)
