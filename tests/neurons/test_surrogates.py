import math

import pytest
import torch

from spikeshield.errors import UsageError
from spikeshield.neurons import SURROGATES, build_surrogate, smooth_spikes
from spikeshield.neurons.surrogates import ATan, Gaussian, Rectangle, Sigmoid, Triangle

ALL = [
    Sigmoid(4.0),
    Sigmoid(1.5),
    ATan(2.0),
    ATan(5.0),
    Rectangle(1.0),
    Rectangle(0.4),
    Triangle(1.0),
    Triangle(0.5),
    Gaussian(0.3),
]


def points_away_from_kinks(surrogate, n: int = 400) -> torch.Tensor:
    x = torch.empty(n, dtype=torch.float64).uniform_(-2.0, 2.0)
    kinks = {
        "rectangle": [-surrogate.value / 2, surrogate.value / 2],
        "triangle": [-surrogate.value, 0.0, surrogate.value],
    }
    for k in kinks.get(surrogate.name, []):
        x = x[(x - k).abs() > 1e-3]
    return x


@pytest.mark.parametrize("surrogate", ALL, ids=repr)
def test_grad_matches_finite_differences_of_primitive(surrogate):
    x = points_away_from_kinks(surrogate)
    h = 1e-6
    numeric = (surrogate.primitive(x + h) - surrogate.primitive(x - h)) / (2 * h)
    torch.testing.assert_close(surrogate.grad(x), numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("surrogate", ALL, ids=repr)
def test_forward_is_heaviside_and_backward_is_g(surrogate):
    x = torch.tensor([-1.0, -1e-7, 0.0, 1e-7, 0.3], dtype=torch.float64, requires_grad=True)
    s = surrogate(x)
    assert s.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]  # Θ(0) = 1
    upstream = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64)
    s.backward(upstream)
    torch.testing.assert_close(x.grad, upstream * surrogate.grad(x.detach()))


@pytest.mark.parametrize("surrogate", ALL, ids=repr)
def test_primitive_is_a_smoothed_step(surrogate):
    x = torch.tensor([-50.0, 50.0], dtype=torch.float64)
    p = surrogate.primitive(x)
    assert p[0].item() == pytest.approx(0.0, abs=0.02)
    assert p[1].item() == pytest.approx(1.0, abs=0.02)
    assert surrogate.primitive(torch.zeros(1, dtype=torch.float64)).item() == pytest.approx(0.5)
    # g integrates to the rise of the primitive (fundamental theorem; ≈ 1 for a 0 → 1 step)
    grid = torch.linspace(-60, 60, 400001, dtype=torch.float64)
    rise = (surrogate.primitive(grid[-1:]) - surrogate.primitive(grid[:1])).item()
    assert torch.trapezoid(surrogate.grad(grid), grid).item() == pytest.approx(rise, abs=1e-3)  # box edges
    assert rise == pytest.approx(1.0, abs=5e-3)


def test_gradcheck_smooth_spike_float64():
    for surrogate in ALL:
        x = points_away_from_kinks(surrogate, 50).requires_grad_(True)
        with smooth_spikes():
            assert torch.autograd.gradcheck(lambda v, s=surrogate: s(v), (x,))


def test_backward_point_can_differ_from_forward_point():
    s = Sigmoid(4.0)
    x = torch.tensor([0.5], requires_grad=True)
    fake = torch.tensor([3.0])
    out = s(x, fake)
    assert out.item() == 1.0
    out.backward()
    torch.testing.assert_close(x.grad, s.grad(fake))


def test_known_surrogate_values():
    assert Sigmoid(4.0).grad(torch.zeros(1)).item() == pytest.approx(1.0)  # α/4
    assert ATan(2.0).grad(torch.zeros(1)).item() == pytest.approx(1.0)  # α/2
    assert Triangle(1.0).grad(torch.tensor([0.0, 0.5, 1.5])).tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert Rectangle(0.5).grad(torch.tensor([0.0, 0.3])).tolist() == pytest.approx([2.0, 0.0])
    assert Gaussian(1.0).grad(torch.zeros(1)).item() == pytest.approx(1 / math.sqrt(2 * math.pi))


@pytest.mark.parametrize(
    "spec,expected",
    [
        (None, Sigmoid(4.0)),
        ("atan", ATan(2.0)),
        ("atan:3", ATan(3.0)),
        ("sigmoid:alpha=5", Sigmoid(5.0)),
        ({"name": "triangle", "gamma": 0.5}, Triangle(0.5)),
        ("RECTANGLE:0.2", Rectangle(0.2)),
    ],
)
def test_build_surrogate_specs(spec, expected):
    assert build_surrogate(spec) == expected


@pytest.mark.parametrize(
    "spec,message",
    [
        ("sigmoud", "did you mean 'sigmoid'"),
        ("atan:abc", "not a number"),
        ("atan:-1", "must be > 0"),
        ("triangle:alpha=1", "takes 'gamma'"),
        ({"gamma": 1}, "has no 'name'"),
        ({"name": "atan", "width": 1}, "takes only 'alpha'"),
        (3, "must be a name"),
    ],
)
def test_bad_surrogate_specs_are_clear(spec, message):
    with pytest.raises(UsageError, match=f"(?i){message}"):
        build_surrogate(spec)


def test_registry_lists_all():
    assert SURROGATES.names() == ["atan", "gaussian", "rectangle", "sigmoid", "triangle"]
