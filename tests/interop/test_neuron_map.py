"""The neuron map against an independent simulation of NIR's equations (forward Euler, step dt)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikeshield.errors import UsageError
from spikeshield.interop import REFUSED, NIRError, neuron_from_nir, neuron_to_nir
from spikeshield.models import build_model
from spikeshield.neurons import build_neuron

from .conftest import need

nir = need("nir")

SHAPE = (5,)
NEURONS = [
    ("if", {}),
    ("if", {"v_threshold": 0.7}),
    ("lif", {"tau": 2.0}),
    ("lif", {"tau": 3.7, "decay_input": False}),
    ("lif", {"tau": 2.5, "v_reset": -0.3, "v_threshold": 0.4}),
    ("lif", {"decay": 0.9}),
    ("lif", {"decay": 1.0}),
    ("plif", {"tau": 4.0}),
]


def simulate_nir(node, current: torch.Tensor, dt: float) -> torch.Tensor:
    """NIR's IF/LIF ODE integrated by forward Euler from rest (v_leak; 0 for IF); ``[T, N]`` spikes."""
    p = {
        k: torch.as_tensor(np.asarray(getattr(node, k)), dtype=torch.float64)
        for k in ("r", "v_threshold", "v_reset")
    }
    is_lif = isinstance(node, nir.LIF)
    if is_lif:
        tau = torch.as_tensor(node.tau, dtype=torch.float64)
        v_leak = torch.as_tensor(node.v_leak, dtype=torch.float64)
    v = v_leak.clone() if is_lif else torch.zeros(SHAPE, dtype=torch.float64)
    spikes = []
    for i in current:
        dv = (dt / tau) * (v_leak - v + p["r"] * i) if is_lif else dt * p["r"] * i
        v = v + dv
        z = (v > p["v_threshold"]).double()
        v = torch.where(z > 0, p["v_reset"], v)
        spikes.append(z)
    return torch.stack(spikes)


@pytest.mark.parametrize("dt", [1.0, 1e-3, 1e-4])
@pytest.mark.parametrize(("name", "options"), NEURONS)
def test_export_equals_nir_semantics(name, options, dt):
    options = {"v_init": 0.0, **options} if name == "if" or "decay" in options else options
    neuron = build_neuron(name, **options).double()
    node = neuron_to_nir(neuron, SHAPE, dt, "layer")
    current = (
        torch.rand(200, 3, *SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2.2
        - 0.3
    )
    ours = neuron(current)
    assert 0.02 < float(ours.mean()) < 0.98
    for b in range(current.shape[1]):
        assert torch.equal(ours[:, b], simulate_nir(node, current[:, b], dt))
    again = neuron_from_nir(node, dt, "layer").double()  # and back: the same neuron, the same spikes
    expected = neuron.spec()
    if name == "plif":  # a learned tau comes back as its value
        expected.update(name="lif", learnable_tau=False, tau=1.0 / float(neuron.inv_tau.detach()))
    if options.get("decay") == 1.0:  # H = 1·V + X is the IF neuron, and is written as one
        expected = {**build_neuron("if", v_init=0.0).spec(), "surrogate": expected["surrogate"]}
    spec = again.spec()
    assert spec.keys() == expected.keys()
    assert all(
        spec[k] == pytest.approx(v, rel=1e-12) if isinstance(v, float) else spec[k] == v
        for k, v in expected.items()
    )
    assert torch.equal(again(current), ours)


def test_the_formulas():
    dt = 1e-3
    lif = neuron_to_nir(build_neuron("lif", tau=2.0), SHAPE, dt, "x")
    assert np.allclose(lif.tau, 2e-3) and np.all(lif.r == 1) and np.all(lif.v_leak == 0)
    lif = neuron_to_nir(build_neuron("lif", tau=2.0, decay_input=False), SHAPE, dt, "x")
    assert np.allclose(lif.tau, 2e-3) and np.all(lif.r == 2.0)
    lif = neuron_to_nir(build_neuron("lif", decay=0.75, v_init=0.0), SHAPE, dt, "x")
    assert np.allclose(lif.tau, 4e-3) and np.allclose(lif.r, 4.0) and np.all(lif.v_leak == 0)
    iff = neuron_to_nir(build_neuron("if"), SHAPE, dt, "x")
    assert isinstance(iff, nir.IF) and np.allclose(iff.r, 1000.0) and np.all(iff.v_threshold == 1)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_neurons_nir_cannot_express_are_refused(name):
    model = build_model("mlp", neuron=name, input_shape=(1, 8, 8), hidden=[16], time_steps=4)
    from spikeshield.interop import to_nir

    with pytest.raises(UsageError) as info:
        to_nir(model)
    message = str(info.value)
    assert "\n" not in message and f"layer body.0 ({name})" in message and REFUSED[name] in message


@pytest.mark.parametrize(
    ("options", "reason"),
    [({"reset": "soft"}, "soft reset"), ({"v_init": 0.5}, "no start potential")],
)
def test_soft_reset_and_a_start_potential_are_refused(options, reason):
    with pytest.raises(UsageError, match=reason):
        neuron_to_nir(build_neuron("lif", **options), SHAPE, 1e-3, "body.0")


def _lif(**kw):
    base = {"tau": np.full(SHAPE, 2e-3), "r": np.ones(SHAPE), "v_leak": np.zeros(SHAPE),
            "v_threshold": np.ones(SHAPE), "v_reset": np.zeros(SHAPE)}  # fmt: skip
    return nir.LIF(
        **{**base, **{k: np.broadcast_to(np.asarray(v, float), SHAPE).copy() for k, v in kw.items()}}
    )


@pytest.mark.parametrize(
    "node",
    [
        _lif(r=3.3),  # an input gain no charge form has: potentials rescaled by it
        _lif(r=7.0, v_leak=0.2, v_reset=0.2),
        nir.IF(r=np.full(SHAPE, 400.0), v_threshold=np.full(SHAPE, 0.8), v_reset=np.zeros(SHAPE)),
    ],
)
def test_foreign_gains_import_exactly_in_real_arithmetic(node):
    dt = 1e-3
    neuron = neuron_from_nir(node, dt, "n").double()
    current = torch.rand(200, *SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    reference = simulate_nir(node, current, dt)
    assert 0.05 < float(reference.mean()) < 0.95
    assert torch.equal(neuron(current.unsqueeze(1))[:, 0], reference)


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (_lif(tau=[2e-3, 2e-3, 2e-3, 2e-3, 3e-3]), "differs between neurons"),
        (_lif(tau=1e-3), r"dt/tau = 1 must be in \(0, 1\)"),
        (_lif(r=-1.0), "must be > 0"),
        (_lif(v_leak=0.3, v_reset=0.1), "leaks toward v_leak = 0.3 but resets to v_reset = 0.1"),
        (_lif(v_threshold=np.nan), "not finite"),
    ],
)
def test_neurons_spikeshield_cannot_import_are_refused(node, message):
    with pytest.raises(NIRError, match=message) as info:
        neuron_from_nir(node, 1e-3, "lif_3")
    assert "'lif_3'" in str(info.value) and info.value.exit_code == 1
