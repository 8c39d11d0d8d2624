"""A neuron fused with the 2×2 max-pool after it, against the neuron then PyTorch's pool.

``kernels.fused_forward(neuron, x, pool=True)`` must return exactly ``F.max_pool2d`` of the
reference spikes. Its gradients must be those of the unpooled fused kernel followed by PyTorch's
max-pool (whose tie rule decides which neuron of a window gets the gradient; test_cpu_exactness
checks that kernel against the reference loop): the input's within 1e-5 of its largest entry, a
learnable parameter's within 1e-5 of its value or, where its terms cancel, of the summed
magnitudes of its per-neuron terms (as in helpers.assert_match; the kernels evaluate the
surrogate with vector and scalar code that round slightly differently, and the two paths cut
their blocks differently). The input gradient is also checked against the reference loop itself,
within 1e-4 of its largest entry (the kernels' own float32 accuracy, e.g. in the sigmoid
surrogate's tails, is of order 1e-5 there).
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from spikeshield import kernels
from spikeshield.models import build_model
from spikeshield.models.layers import MaxPool2d as PoolLayer
from spikeshield.models.layers import SpikingSequential, TimeDistributed
from spikeshield.neurons import build_neuron

from .helpers import NEURONS, RESETS, SURROGATE_NAMES, float64_contributions, fresh_seed, make_neuron

#: stateful neurons the pooled kernel runs (the oscillating ones fall back: tested below)
POOLED = [c for c in NEURONS if not c.startswith("oscillating")]
#: [T, B, C, H, W]: even, odd height and width (floor mode drops a row / column), 2×2 planes (small:
#: a learnable parameter's gradient sums every neuron, see helpers.assert_match)
SHAPES = [(4, 2, 3, 8, 8), (3, 2, 2, 7, 9), (2, 3, 1, 2, 2), (5, 1, 2, 3, 11)]


def pool_steps(spikes: Tensor) -> Tensor:
    """PyTorch's max-pool applied per time step, as a model's TimeDistributed(MaxPool2d(2)) does."""
    flat = F.max_pool2d(spikes.reshape(-1, *spikes.shape[-3:]), 2)
    return flat.reshape(*spikes.shape[:-2], *flat.shape[-2:])


def run(neuron, x: Tensor, seed: int, path: str, repeat: bool = False) -> dict:  # type: ignore[no-untyped-def]
    """Pooled spikes and gradients (input, parameters) of one path: ``fused`` (neuron and pool in
    one kernel), ``kernel`` (the fused neuron, then PyTorch's pool) or ``reference`` (the reference
    loop, then PyTorch's pool). ``repeat``: direct encoding's expanded view of one step."""
    leaf = (x[0] if repeat else x).detach().clone().requires_grad_(True)
    xi = leaf.unsqueeze(0).expand(x.shape) if repeat else leaf
    neuron.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    if path == "fused":
        pooled = kernels.fused_forward(neuron, xi, pool=True)
        assert pooled is not None and "NeuronFunction" in type(pooled.grad_fn).__name__
    elif path == "kernel":
        pooled = pool_steps(neuron(xi))
    else:
        with kernels.reference_only():
            pooled = pool_steps(neuron(xi))
    upstream = torch.randn(pooled.shape, generator=torch.Generator().manual_seed(seed))
    (pooled * upstream).sum().backward()
    out = {"spikes": pooled.detach(), "x": leaf.grad}
    for name, p in neuron.named_parameters():
        out[name] = p.grad if p.grad is not None else torch.zeros_like(p)
    return out


def close(got: Tensor, expected: Tensor, tolerance: float = 1e-5) -> bool:
    """Within ``tolerance`` relative, element by element, or of the expected tensor's largest entry."""
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    return bool(torch.allclose(got, expected, rtol=tolerance, atol=tolerance * max(scale, 1e-30)))


def compare(neuron, x: Tensor, seed: int, context: str, repeat: bool = False) -> Tensor:  # type: ignore[no-untyped-def]
    fused, kernel, reference = (run(neuron, x, seed, p, repeat) for p in ("fused", "kernel", "reference"))
    assert torch.equal(fused["spikes"], reference["spikes"]), f"pooled spikes differ ({context})"
    assert close(fused["x"], kernel["x"]), f"input gradient differs from kernel then pool ({context})"
    assert close(fused["x"], reference["x"], 1e-4), f"input gradient differs from the reference ({context})"
    shape = reference["spikes"].shape

    def pooled_loss(spikes: Tensor) -> Tensor:
        upstream = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(spikes.dtype)
        return (pool_steps(spikes) * upstream).sum()

    for name, _ in neuron.named_parameters():
        if close(fused[name], kernel[name]):
            continue
        parts = float64_contributions(neuron, x, seed, pooled_loss)[name]  # per-neuron terms
        magnitude = parts.abs().sum(tuple(range(1 if name == "gain" else 0, parts.dim())))
        error = (fused[name].double() - kernel[name].double()).abs()
        values = [t.flatten()[:4].tolist() for t in (fused[name], kernel[name], magnitude)]
        assert bool((error <= 1e-5 * magnitude).all()), (
            f"gradient {name}: fused pool {values[0]}, kernel then pool {values[1]}, "
            f"terms' magnitude {values[2]} ({context})"
        )
    return reference["spikes"]


@pytest.mark.parametrize(
    ("config", "surrogate", "reset"), list(itertools.product(POOLED, SURROGATE_NAMES, RESETS))
)
def test_fused_pool_matches_reference_neuron_then_pytorch_pool(
    config: str, surrogate: str, reset: str
) -> None:
    name, options = NEURONS[config]
    if name == "noisy-if":
        pytest.skip("stateless noisy neuron: no pooled kernel (checked in test_fallbacks)")
    seed = fresh_seed()
    gen = torch.Generator().manual_seed(seed)
    index = (POOLED.index(config) + SURROGATE_NAMES.index(surrogate) + list(RESETS).index(reset)) % len(
        SHAPES
    )
    shape = SHAPES[index]
    neuron = make_neuron(name, {**options, **RESETS[reset], "surrogate": surrogate}, shape[0], gen)
    x = torch.randn(shape, generator=gen) * 1.2 + 0.5
    pooled = compare(neuron, x, seed, f"{config} {surrogate} {reset} shape={shape} seed={seed}")
    if pooled.numel() >= 100:  # the larger shapes: some windows fire, some do not
        assert 0 < int(pooled.sum()) < pooled.numel(), f"degenerate case (seed={seed})"


@pytest.mark.parametrize("config", ["lif", "plif", "klif-scale-reset", "dlif"])
def test_direct_encoding_repeated_input(config: str) -> None:
    """The first neuron of a direct-encoded CNN reads one step repeated T times; its gradient is
    the sum over t, and with pooling it must still be the reference's."""
    name, options = NEURONS[config]
    seed = fresh_seed()
    gen = torch.Generator().manual_seed(seed)
    shape = (4, 3, 2, 9, 10)
    neuron = make_neuron(name, options, shape[0], gen)
    x = (torch.randn(shape[1:], generator=gen) * 1.2 + 0.5).expand(shape)
    compare(neuron, x, seed, f"{config} repeated seed={seed}", repeat=True)


@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_planes_wider_than_a_block(reset: str) -> None:
    """A row pair longer than a block of neurons (W = 300): one row pair per block."""
    seed = fresh_seed()
    x = torch.randn(3, 1, 2, 5, 300, generator=torch.Generator().manual_seed(seed)) + 0.5
    compare(build_neuron("lif", reset=reset), x, seed, f"wide seed={seed}")


def test_ties_everywhere_and_several_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strong input: most windows hold several spikes (ties); split over three threads."""
    monkeypatch.setenv("SPIKESHIELD_KERNEL_THREADS", "3")
    seed = fresh_seed()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 4, 8, 28, 28, generator=gen) + 1.5
    pooled = compare(build_neuron("lif", reset="soft"), x, seed, f"threads seed={seed}")
    assert pooled.mean() > 0.5


def test_fallbacks_return_none() -> None:
    x = torch.randn(3, 2, 2, 6, 6) + 0.5
    assert kernels.fused_forward(build_neuron("oscillating-lif"), x, pool=True) is None
    assert kernels.fused_forward(build_neuron("noisy-if"), x, pool=True) is None
    assert kernels.fused_forward(build_neuron("lif"), x[..., :1, :], pool=True) is None  # H = 1
    assert kernels.fused_forward(build_neuron("lif"), x[:, 0, 0], pool=True) is None  # [T, H, W]: no planes
    with kernels.reference_only():
        assert kernels.fused_forward(build_neuron("lif"), x, pool=True) is None
    assert kernels.fused_forward(build_neuron("lif"), x.double(), pool=True) is None


def block(neuron_name: str) -> SpikingSequential:
    return SpikingSequential(build_neuron(neuron_name), TimeDistributed(PoolLayer(2), torch.nn.Flatten()))


@pytest.mark.parametrize("neuron_name", ["lif", "oscillating-lif"])
def test_spiking_sequential_equals_running_the_modules(neuron_name: str) -> None:
    seq = block(neuron_name)
    x = (torch.randn(3, 2, 4, 9, 8) + 0.5).requires_grad_()
    torch.manual_seed(0)
    fused = seq(x)
    torch.manual_seed(0)
    plain = torch.nn.Sequential.forward(seq, x)
    assert torch.equal(fused, plain)
    (g_fused,) = torch.autograd.grad(fused.sum(), x)
    (g_plain,) = torch.autograd.grad(plain.sum(), x)
    torch.testing.assert_close(g_fused, g_plain, rtol=1e-6, atol=1e-7)


def test_a_hook_on_the_neuron_sees_the_full_spike_map() -> None:
    seq = block("lif")
    seen = []
    seq[0].register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    x = torch.randn(3, 2, 4, 8, 8) + 0.5
    out = seq(x)
    assert seen == [torch.Size([3, 2, 4, 8, 8])]
    assert torch.equal(out, torch.nn.Sequential.forward(seq, x))


@pytest.mark.parametrize(
    ("name", "neuron", "shape"), [("cnn", "plif", (1, 14, 14)), ("plifnet", "klif", (3, 16, 16))]
)
def test_training_step_with_and_without_fusion(
    monkeypatch: pytest.MonkeyPatch, name: str, neuron: str, shape: tuple[int, int, int]
) -> None:
    """The cnn and plifnet bodies are SpikingSequentials: a fused step gives the unfused step's
    loss and gradients (the state dict is that of the plain modules)."""
    images = torch.rand(5, *shape, generator=torch.Generator().manual_seed(fresh_seed()))
    labels = torch.arange(5)
    results = []
    fused_blocks = []
    original = SpikingSequential._neuron_then_pool

    def counted(*args: object) -> Tensor | None:
        out = original(*args)  # type: ignore[arg-type]
        fused_blocks.append(out is not None)
        return out

    monkeypatch.setattr(SpikingSequential, "_neuron_then_pool", staticmethod(counted))
    for fuse in (True, False):
        if not fuse:
            monkeypatch.setattr(SpikingSequential, "_neuron_then_pool", staticmethod(lambda *a: None))
        torch.manual_seed(0)
        model = build_model(name, neuron=neuron, input_shape=shape, time_steps=3, channels=6)
        assert isinstance(model.body, SpikingSequential)
        fused_blocks.clear()  # building ran a forward pass
        loss = F.cross_entropy(model(images), labels)
        if fuse:
            assert fused_blocks.count(True) == 2  # both conv blocks' last neuron + pool ran fused
        loss.backward()
        results.append((loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}))
    (loss_f, grads_f), (loss_p, grads_p) = results
    assert torch.equal(loss_f, loss_p)
    assert grads_f.keys() == grads_p.keys()
    for key in grads_f:
        torch.testing.assert_close(grads_f[key], grads_p[key], rtol=1e-5, atol=1e-6, msg=key)
