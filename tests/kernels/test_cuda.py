"""The compiled Triton kernels on a CUDA GPU against the reference on the same GPU.

Skipped where there is no GPU (the kernels are still checked in Triton's interpreter there).
On a GPU run ``python -m pytest tests/kernels/test_cuda.py -v`` and commit the log under
``results/kernels/``.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from spikeshield import kernels

from .helpers import NEURONS, RESETS, SURROGATE_NAMES, assert_match, fresh_seed, make_neuron, run_both

if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU", allow_module_level=True)
pytest.importorskip("triton")

SHAPES = [(1, 3, 7), (5, 3, 37), (4, 2, 3, 5, 5), (8, 32, 4099)]
CASES = list(itertools.product(NEURONS, SURROGATE_NAMES, RESETS))


@pytest.mark.parametrize(("config", "surrogate", "reset"), CASES)
def test_cuda_float32_matches_reference(config: str, surrogate: str, reset: str) -> None:
    name, options = NEURONS[config]
    seed = fresh_seed()
    gen = torch.Generator().manual_seed(seed)
    shape = SHAPES[CASES.index((config, surrogate, reset)) % len(SHAPES)]
    neuron = make_neuron(name, {**options, **RESETS[reset], "surrogate": surrogate}, shape[0], gen).cuda()
    x = (torch.randn(shape, generator=gen) * 1.2 + 0.5).cuda()
    assert kernels.backend_for(x) == "triton"
    fused, reference = run_both(neuron, x, seed)
    assert_match(fused, reference, f"cuda {config} {surrogate} {reset} shape={shape} seed={seed}")


@pytest.mark.parametrize("options", [{}, {"noise": "uniform"}, {"gradient": "surrogate"}])
def test_cuda_noisy_if_matches_reference(options: dict) -> None:
    seed = fresh_seed()
    neuron = make_neuron("noisy-if", options, 4, torch.Generator().manual_seed(seed)).cuda()
    x = (torch.randn(4, 16, 999, generator=torch.Generator().manual_seed(seed)) + 0.4).cuda()
    fused, reference = run_both(neuron, x, seed)
    assert_match(fused, reference, f"cuda noisy-if {options} seed={seed}")


LOW_PRECISION = ["lif", "klif-scale-reset", "plif", "dlif", "linear-lif", "oscillating-lif-fake"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("config", LOW_PRECISION)
def test_cuda_low_precision(dtype: torch.dtype, config: str) -> None:
    """Half precision in and out, float32 inside: the float32 reference's spikes on the same input."""
    seed = fresh_seed()
    gen = torch.Generator().manual_seed(seed)
    name, options = NEURONS[config]
    neuron = make_neuron(name, options, 6, gen).cuda()
    x = (torch.randn((6, 8, 1000), generator=gen) * 1.2 + 0.5).to(dtype).cuda()
    upstream = torch.randn(x.shape, generator=gen).to(dtype).cuda()
    xs = x.detach().requires_grad_()
    spikes = neuron(xs)
    assert spikes.dtype == dtype
    (spikes * upstream).sum().backward()
    x32 = x.float().requires_grad_()
    with kernels.reference_only():
        ref = neuron(x32)
    (ref * upstream.float()).sum().backward()
    assert torch.equal(spikes.float(), ref), f"seed={seed}"
    assert (xs.grad.float() - x32.grad).abs().max() <= 1e-2 * x32.grad.abs().max() + 1e-6
