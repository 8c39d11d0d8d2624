"""``oscillating-lif`` against a plain-PyTorch reference step: spikes, and the input gradient
of the true neuron and of the fake neuron the defence hands the attacker (issue 15)."""

import math

import pytest
import torch

from spikeshield.kernels import reference_only
from spikeshield.neurons import build_neuron, true_gradient

TAU, ALPHA = 2.0, 4.0  # the neuron's defaults: LIF τ = 2, V_th = 1, hard reset to 0, sigmoid α = 4
TRUE = {"amplitude": 0.3, "frequency": 0.25, "phase": 0.4}
FAKE = {"backward_amplitude": 1.5, "backward_frequency": 0.1, "backward_phase": -1.0}


def reference(x: torch.Tensor, target: str, backward: dict | None) -> torch.Tensor:
    """Spikes ``[T, ...]`` of the oscillating LIF written out step by step; the surrogate is a
    straight-through σ(α·u_b) at the backward point u_b (the fake neuron's, if ``backward``)."""
    v = torch.zeros_like(x[0])
    spikes = []
    for t in range(x.shape[0]):
        osc = TRUE["amplitude"] * math.sin(2 * math.pi * TRUE["frequency"] * t + TRUE["phase"])
        osc_b = osc
        if backward is not None:
            angle = 2 * math.pi * backward["backward_frequency"] * t + backward["backward_phase"]
            osc_b = backward["backward_amplitude"] * math.sin(angle)
        h = v + (x[t] - v) / TAU
        if target == "membrane":  # H oscillates: u = H + osc − V_th; the fake neuron's H has osc_b
            h = h + osc
            u, u_b = h - 1.0, h - 1.0 - osc + osc_b
        else:  # the threshold oscillates: u = H − (V_th + osc); the fake threshold is V_th + osc_b
            u, u_b = h - 1.0 - osc, h - 1.0 - osc_b
        smooth = torch.sigmoid(ALPHA * u_b)
        s = (u >= 0).to(x.dtype) + (smooth - smooth.detach())  # value exactly Θ(u)
        v = h * (1.0 - s)
        spikes.append(s)
    return torch.stack(spikes)


def spikes_and_grad(run, x: torch.Tensor, upstream: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xi = x.clone().requires_grad_(True)
    s = run(xi)
    (s * upstream).sum().backward()
    return s.detach(), xi.grad


#: the fused CPU kernel runs float32 (the reference computes in float32 too); the neuron's own
#: reference loop is compared in float64
PATHS = {
    "fused": (torch.float32, {"rtol": 1e-5, "atol": 1e-6}),
    "reference loop": (torch.float64, {"rtol": 1e-9, "atol": 1e-12}),
}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("target", ["membrane", "threshold"])
@pytest.mark.parametrize("defended", [False, True], ids=["plain", "fake-backward"])
def test_matches_the_plain_pytorch_step(path, target, defended):
    dtype, tol = PATHS[path]
    gen = torch.Generator().manual_seed(15)
    x = (1.2 * torch.rand(8, 3, 17, generator=gen, dtype=torch.float64)).to(dtype)
    upstream = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(dtype)
    neuron = build_neuron("oscillating-lif", target=target, **TRUE, **(FAKE if defended else {})).to(dtype)

    def run(xi):
        if path == "fused":
            return neuron(xi)
        with reference_only():
            return neuron(xi)

    spikes, grad = spikes_and_grad(run, x, upstream)
    ref_spikes, ref_grad = spikes_and_grad(
        lambda xi: reference(xi, target, FAKE if defended else None), x, upstream
    )
    assert 0 < spikes.mean() < 1  # it fires, and not everywhere
    assert torch.equal(spikes, ref_spikes)
    torch.testing.assert_close(grad, ref_grad, **tol)
    if defended:
        with true_gradient(neuron) as switched:  # the attacker who knows the defence
            true_spikes, true_grad = spikes_and_grad(run, x, upstream)
        _, plain_grad = spikes_and_grad(lambda xi: reference(xi, target, None), x, upstream)
        assert switched == 1 and torch.equal(true_spikes, spikes)
        torch.testing.assert_close(true_grad, plain_grad, **tol)
        assert not torch.allclose(grad, true_grad)  # the fake gradient is another one
