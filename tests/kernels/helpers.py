"""Shared cases and comparison for the fused-kernel tests: fused path vs the reference loop."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from spikeshield.kernels import reference_only
from spikeshield.neurons import SURROGATES, build_neuron
from spikeshield.neurons.base import SpikingNeuron

SURROGATE_NAMES = sorted(SURROGATES.names())
#: hard / soft reset, each with the gradient through the reset or detached
RESETS = {
    "hard": {"reset": "hard"},
    "soft": {"reset": "soft"},
    "hard-detached": {"reset": "hard", "detach_reset": True},
    "soft-detached": {"reset": "soft", "detach_reset": True},
}
#: every registered stateful neuron in each of its structurally different configurations
NEURONS: dict[str, tuple[str, dict[str, Any]]] = {
    "if": ("if", {}),
    "lif": ("lif", {"tau": 2.0}),
    "lif-offsets": ("lif", {"tau": 3.0, "v_threshold": 0.7, "v_reset": -0.3, "v_init": 0.2}),
    "lif-no-decay-input": ("lif", {"tau": 3.0, "decay_input": False}),
    "lif-learnable-tau": ("lif", {"tau": 2.5, "learnable_tau": True}),
    "lif-multiplicative": ("lif", {"decay": 0.9}),
    "plif": ("plif", {}),
    "plif-no-decay-input": ("plif", {"decay_input": False}),
    "linear-lif": ("linear-lif", {"leak": 0.15}),
    "linear-lif-no-floor": ("linear-lif", {"leak": 0.2, "floor": None}),
    "klif": ("klif", {}),
    "klif-scale-reset": ("klif", {"scale_reset": True}),
    "klif-fixed-k": ("klif", {"learnable_k": False, "k_init": 1.5}),
    "dlif": ("dlif", {}),
    "oscillating-lif": ("oscillating-lif", {"amplitude": 0.3}),
    "oscillating-lif-threshold-random": (
        "oscillating-lif",
        {"target": "threshold", "random_phase": True, "amplitude": 0.4},
    ),
    "oscillating-lif-fake": ("oscillating-lif", {"backward_amplitude": 0.6, "backward_frequency": 0.1}),
    "oscillating-lif-fake-random": (
        "oscillating-lif",
        {"random_phase": True, "backward_phase": 1.0, "target": "threshold"},
    ),
}
#: [T, B, ...] shapes: T = 1, odd sizes, extra feature dims, one spanning several blocks of neurons
SHAPES = [(1, 3, 7), (5, 3, 37), (4, 2, 3, 5, 5), (3, 1, 1), (2, 1, 4099)]
#: enough steps and neurons that every configuration fires in nearly every draw (checked), still small
BUSY_SHAPE = (7, 3, 61)


def fresh_seed() -> int:
    """A new seed every run (inputs are random each time); failures print it."""
    return int.from_bytes(os.urandom(4), "little")


def make_neuron(name: str, options: dict[str, Any], steps: int, generator: torch.Generator) -> SpikingNeuron:
    """Build the neuron and give its learnable tensors random (non-default) values."""
    if name == "dlif":
        options = {"time_steps": steps, **options}
    neuron = build_neuron(name, **options)
    with torch.no_grad():
        if getattr(neuron, "tau_logit", None) is not None:  # 1/τ = sigmoid(w) uniform in [0.3, 0.8]
            inv_tau = 0.3 + 0.5 * torch.rand((), generator=generator)
            neuron.tau_logit.copy_(torch.log(inv_tau / (1 - inv_tau)))
        if name == "klif":
            neuron.k.copy_(0.5 + 1.5 * torch.rand((), generator=generator))
        if name == "dlif":
            neuron.gain.copy_(0.5 + torch.rand(steps, generator=generator))
    return neuron


def _run(neuron: SpikingNeuron, x: Tensor, seed: int, reference: bool, grad_of: Callable | None) -> dict:
    xi = x.detach().clone().requires_grad_(True)
    neuron.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    if reference:
        with reference_only():
            spikes = neuron(xi)
    else:
        spikes = neuron(xi)
    upstream = torch.randn(spikes.shape, generator=torch.Generator().manual_seed(seed)).to(x.dtype)
    loss = (spikes * upstream).sum() if grad_of is None else grad_of(spikes)
    loss.backward()
    out = {"spikes": spikes.detach(), "x": xi.grad}
    for pname, p in neuron.named_parameters():
        out[pname] = p.grad if p.grad is not None else torch.zeros_like(p)
    return out


def run_both(
    neuron: SpikingNeuron, x: Tensor, seed: int, grad_of: Callable[[Tensor], Tensor] | None = None
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Spikes and gradients (input and every parameter) of the fused path and of the reference.

    Both runs start from the same global seed, so random phases and noise are drawn alike. The
    reference result carries a ``"float64"`` callable: the same reference computation in float64
    (ground truth for sums whose float32 rounding exceeds the tolerance).
    """
    fused = _run(neuron, x, seed, False, grad_of)
    reference = _run(neuron, x, seed, True, grad_of)

    def float64() -> dict[str, Tensor]:
        return float64_contributions(neuron, x, seed, grad_of)

    reference["float64"] = float64  # type: ignore[assignment]
    return fused, reference


def float64_contributions(
    neuron: SpikingNeuron, x: Tensor, seed: int, grad_of: Callable | None
) -> dict[str, Tensor]:
    """The reference in float64 with every scalar parameter untied per neuron (and p[t] per step
    and neuron): for each parameter, the per-neuron gradient contributions whose sum is its
    gradient. Returns ``{name: contributions}`` plus ``spikes``."""
    twin = copy.deepcopy(neuron).double()
    per_neuron = tuple(x.shape[1:])
    with torch.no_grad():
        for pname, p in list(twin.named_parameters()):
            if pname == "gain":  # [T] -> [T, B, ...]
                full = p.view(-1, *([1] * len(per_neuron))).expand(x.shape[0], *per_neuron)
            else:  # 0-d -> [B, ...]
                full = p.expand(per_neuron)
            setattr(twin, pname, torch.nn.Parameter(full.clone()))
    return _run(twin, x.double(), seed, True, grad_of)


def assert_match(fused: dict[str, Tensor], reference: dict[str, Tensor], context: str) -> None:
    """Spikes identical; every gradient within 1e-5 relative.

    The input gradient is compared element by element (tolerance 1e-5 of its largest entry). A
    parameter gradient (τ, k, p[t]) is one sum over many neurons: where those contributions
    cancel, float32 rounding of the terms alone can exceed 1e-5 of the result, in the reference
    as in the kernels. It must be within 1e-5 of the float32 reference, or else within 1e-5 of the
    sum of the contributions' magnitudes from the exact float64 reference.
    """
    assert torch.equal(fused["spikes"], reference["spikes"]), f"spikes differ ({context})"
    truth: dict[str, Tensor] | None = None
    for key, ref in reference.items():
        if key in ("spikes", "float64"):
            continue
        got = fused[key]
        assert got is not None and ref is not None, f"missing gradient {key} ({context})"
        if _close(got, ref):
            continue
        message = f"gradient {key}: fused {_summary(got)}, float32 reference {_summary(ref)}"
        assert key != "x", f"{message} ({context})"
        if truth is None:
            truth = reference["float64"]()  # type: ignore[operator]
        assert torch.equal(truth["spikes"].float(), reference["spikes"].float()), (
            f"{message}; the float64 reference fires differently ({context})"
        )
        parts = truth[key]
        dims = tuple(range(1 if key == "gain" else 0, parts.dim()))
        exact, magnitude = parts.sum(dims), parts.abs().sum(dims)
        error = (got.double() - exact).abs()
        assert bool((error <= 1e-5 * magnitude).all()), (
            f"{message}, float64 {_summary(exact)}, magnitude of its terms {_summary(magnitude)} ({context})"
        )


def _close(got: Tensor, expected: Tensor) -> bool:
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    return bool(torch.allclose(got, expected, rtol=1e-5, atol=1e-5 * max(scale, 1e-30)))


def _summary(t: Tensor) -> str:
    return f"{t.flatten()[:4].tolist()}" if t.numel() <= 4 else f"max|.|={float(t.abs().max()):.6g}"
