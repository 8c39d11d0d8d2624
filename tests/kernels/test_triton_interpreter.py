"""The Triton kernels under ``TRITON_INTERPRET=1`` on CPU tensors (correctness only, small shapes).

The interpreter executes the kernels' Python with NumPy, one IEEE float32 operation at a time,
so float32 spikes must equal the reference's and gradients agree to 1e-5. bfloat16/float16
inputs are computed in float32 inside the kernel: spikes must equal the float32 reference on the
same (rounded) input, gradients agree to the low precision's rounding.
"""

from __future__ import annotations

import itertools
import os
from types import ModuleType

import pytest
import torch

from spikeshield.kernels import philox, reference_only

from .helpers import (
    NEURONS,
    RESETS,
    SURROGATE_NAMES,
    assert_match,
    float64_contributions,
    fresh_seed,
    make_neuron,
    run_both,
)

pytest.importorskip("triton")


@pytest.fixture(scope="module")
def triton_backend() -> ModuleType:
    """The Triton backend with its kernels decorated in interpreter mode (see conftest.py)."""
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: tests/kernels/test_cuda.py runs the compiled kernels instead")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.fail("triton was imported before TRITON_INTERPRET=1 was set; run with TRITON_INTERPRET=1")
    from spikeshield.kernels import triton_backend as module

    assert module.available()
    return module


@pytest.fixture
def use_interpreter(triton_backend: ModuleType, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Route every fused neuron call of the test through the interpreted Triton kernels."""
    from spikeshield import kernels

    monkeypatch.setattr(kernels, "triton_backend", triton_backend, raising=False)
    monkeypatch.setattr(kernels, "backend_for", lambda x: "triton")
    return triton_backend


SHAPES = [(1, 2, 5), (4, 3, 37), (3, 2, 3, 4, 4), (2, 1, 1100)]
# every neuron configuration once, surrogates and resets in turn; and every surrogate × reset on LIF
CASES = [
    (config, SURROGATE_NAMES[i % len(SURROGATE_NAMES)], list(RESETS)[i % len(RESETS)])
    for i, config in enumerate(NEURONS)
] + [("lif", s, r) for s, r in itertools.product(SURROGATE_NAMES, RESETS)]


@pytest.mark.parametrize(("config", "surrogate", "reset"), CASES)
def test_float32_matches_reference(
    config: str, surrogate: str, reset: str, use_interpreter: ModuleType
) -> None:
    name, options = NEURONS[config]
    seed = fresh_seed()
    gen = torch.Generator().manual_seed(seed)
    shape = SHAPES[CASES.index((config, surrogate, reset)) % len(SHAPES)]
    neuron = make_neuron(name, {**options, **RESETS[reset], "surrogate": surrogate}, shape[0], gen)
    x = torch.randn(shape, generator=gen) * 1.2 + 0.5
    fused, reference = run_both(neuron, x, seed)
    assert "Triton" in type(neuron(x.requires_grad_()).grad_fn).__name__
    assert_match(fused, reference, f"triton {config} {surrogate} {reset} shape={shape} seed={seed}")


@pytest.mark.parametrize(
    "options",
    [{}, {"noise": "uniform"}, {"gradient": "surrogate", "surrogate": "atan"}],
    ids=["gaussian", "uniform", "surrogate"],
)
def test_noisy_if_matches_reference(options: dict, use_interpreter: ModuleType) -> None:
    seed = fresh_seed()
    gen = torch.Generator().manual_seed(seed)
    neuron = make_neuron("noisy-if", options, 3, gen)
    x = torch.randn((3, 4, 50), generator=gen) + 0.4
    fused, reference = run_both(neuron, x, seed)
    assert_match(fused, reference, f"triton noisy-if {options} seed={seed}")


@pytest.mark.parametrize("kind", ["gaussian", "uniform"])
@pytest.mark.parametrize(("rows", "per_row"), [(1, 4099), (3, 37)])
def test_noise_is_the_reference_bit_for_bit(
    kind: str, rows: int, per_row: int, triton_backend: ModuleType
) -> None:
    """The kernel's Philox noise (``tl.philox``, Box–Muller): the point of X = 0, ξ = raw, V_th = 0."""
    steps = 3
    keys = torch.randint(0, philox.KEY_HIGH, (rows,))
    x = torch.zeros(steps, rows * per_row)
    point, spikes = torch.empty_like(x), torch.empty_like(x)
    n = x.numel()
    triton_backend._noisy_forward_kernel[(triton_backend.triton.cdiv(n, triton_backend.BLOCK),)](
        x, keys, spikes, point, n, rows, per_row, 1.0, 0.0, 0.0,
        NOISY=True, GAUSSIAN=kind == "gaussian", KEEP_POINT=True, BLOCK=triton_backend.BLOCK,
    )  # fmt: skip
    for t in range(steps):
        expected = philox.raw_noise((rows, per_row), keys, t, kind, torch.device("cpu")).flatten()
        assert torch.equal(point[t].view(torch.int32), expected.view(torch.int32)), (
            f"{kind} step {t}: {int((point[t] != expected).sum())} of {expected.numel()} values differ"
        )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("config", ["klif-scale-reset", "plif", "dlif", "oscillating-lif-fake"])
def test_low_precision_inputs(dtype: torch.dtype, config: str, use_interpreter: ModuleType) -> None:
    """Half precision in and out, float32 inside: the float32 reference's spikes on the same input."""
    seed = fresh_seed()
    gen = torch.Generator().manual_seed(seed)
    name, options = NEURONS[config]
    neuron = make_neuron(name, options, 4, gen)
    x = (torch.randn((4, 3, 45), generator=gen) * 1.2 + 0.5).to(dtype)
    upstream = torch.randn(x.shape, generator=gen).to(dtype)
    results = []
    for low in (True, False):
        xi = (x if low else x.float()).detach().requires_grad_()
        neuron.zero_grad(set_to_none=True)
        torch.manual_seed(seed)
        if low:
            spikes = neuron(xi)
            assert spikes.dtype == dtype and "Triton" in type(spikes.grad_fn).__name__
        else:
            with reference_only():
                spikes = neuron(xi)
        (spikes * upstream.to(spikes.dtype)).sum().backward()
        assert xi.grad.dtype == xi.dtype
        grads = {n: p.grad.clone() for n, p in neuron.named_parameters()}
        results.append((spikes.float(), xi.grad.float(), grads))
    (s_low, g_low, p_low), (s_32, g_32, p_32) = results
    assert torch.equal(s_low, s_32), f"seed={seed}"
    assert (g_low - g_32).abs().max() <= 1e-2 * g_32.abs().max() + 1e-6, f"seed={seed}"
    for pname, a in p_low.items():
        b = p_32[pname]
        if torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max())):
            continue
        # a parameter gradient is a float32 sum of 540 terms, added in another order than the
        # reference's; where they cancel the two differ by more than 1e-4 of the sum (float16 KLIF's k
        # and PLIF's τ each in 1 of 300 seeds). Then, as in helpers.assert_match, it must be within
        # 1e-5 of its terms' summed magnitudes from the exact float64 sum (the same rounded input)
        loss = lambda s: (s * upstream.to(s.dtype)).sum()  # noqa: E731
        parts = float64_contributions(neuron, x.float(), seed, loss)[pname]
        dims = tuple(range(1 if pname == "gain" else 0, parts.dim()))
        error = (a.double() - parts.sum(dims)).abs()
        assert bool((error <= 1e-5 * parts.abs().sum(dims)).all()), (
            f"gradient {pname}: {a.tolist()[:4]} vs float32 reference {b.tolist()[:4]} (seed={seed})"
        )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_noisy_if_low_precision(dtype: torch.dtype, use_interpreter: ModuleType) -> None:
    """The noise is computed in float32 (the reference casts it to the input's dtype); spikes are 0/1
    in that dtype and fire at the rate of the float32 reference."""
    neuron = make_neuron("noisy-if", {}, 3, torch.Generator().manual_seed(0))
    x = torch.full((3, 4, 500), 0.5, dtype=dtype, requires_grad=True)
    spikes = neuron(x)
    assert spikes.dtype == dtype and set(spikes.unique().tolist()) <= {0.0, 1.0}
    spikes.sum().backward()
    assert x.grad.dtype == dtype and torch.isfinite(x.grad.float()).all()
    with reference_only():
        rate = neuron(x.detach().float()).mean()
    assert abs(float(spikes.detach().float().mean()) - float(rate)) < 0.05


@pytest.mark.parametrize("config", ["lif", "klif-scale-reset", "dlif", "plif"])
def test_repeated_input(config: str, use_interpreter: ModuleType) -> None:
    """Direct encoding's expanded input: read in place, gradient summed over t in the kernel."""
    seed = fresh_seed()
    gen = torch.Generator().manual_seed(seed)
    name, options = NEURONS[config]
    neuron = make_neuron(name, options, 4, gen)
    y0 = torch.randn((3, 50), generator=gen) + 0.5
    upstream = torch.randn((4, 3, 50), generator=torch.Generator().manual_seed(seed))  # as run_both's
    results = []
    for use_reference in (False, True):
        y = y0.clone().requires_grad_()
        neuron.zero_grad(set_to_none=True)
        x = y.unsqueeze(0).expand(4, 3, 50)
        if use_reference:
            with reference_only():
                spikes = neuron(x)
        else:
            spikes = neuron(x)
            assert "Triton" in type(spikes.grad_fn).__name__
        (spikes * upstream).sum().backward()
        results.append(
            {"spikes": spikes.detach(), "x": y.grad, **{n: p.grad for n, p in neuron.named_parameters()}}
        )
    fused, reference = results
    # a parameter gradient (τ, k, p[t]) is a float32 sum of 600 terms (150 neurons, 4 steps), added in
    # another order than the reference's: where the terms cancel, the two can differ by more than 1e-5
    # of the sum (PLIF's τ by 3.5e-5 in one run, seed 915428474 with the upstream drawn from gen; that
    # was a test failure). As in every other kernel test (helpers.assert_match) such a gradient is
    # judged against the exact float64 sum instead: within 1e-5 of its terms' summed magnitudes
    expanded = y0.unsqueeze(0).expand(4, 3, 50).contiguous()
    reference["float64"] = lambda: float64_contributions(neuron, expanded, seed, None)  # type: ignore[assignment]
    assert_match(fused, reference, f"triton {config} repeated seed={seed}")
