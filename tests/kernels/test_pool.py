"""The 2×2 max-pool kernel against PyTorch's max-pool: values and gradients, ties included."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spikeshield import kernels
from spikeshield.kernels import pool
from spikeshield.models.layers import MaxPool2d

from .helpers import fresh_seed

#: even and odd sizes (floor mode drops the last row / column), 3-D input, single windows
SHAPES = [(2, 3, 8, 8), (4, 2, 9, 11), (3, 5, 33, 34), (1, 1, 2, 2), (2, 2, 2, 3), (3, 7, 7), (2, 3, 5, 40)]


def both(x: torch.Tensor, grad: torch.Tensor | None = None) -> tuple[dict, dict]:
    """Output and input gradient of the kernel and of PyTorch for the same input and upstream."""
    results = []
    upstream = torch.randn(F.max_pool2d(x, 2).shape) if grad is None else grad
    for use_kernel in (True, False):
        xi = x.detach().clone().requires_grad_(True)
        y = pool.max_pool2d(xi) if use_kernel else F.max_pool2d(xi, 2)
        assert ("MaxPool2Function" in type(y.grad_fn).__name__) == use_kernel
        y.backward(upstream)
        results.append({"y": y.detach(), "grad": xi.grad})
    return results[0], results[1]


def spikes(shape: tuple[int, ...], rate: float, seed: int) -> torch.Tensor:
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < rate).float()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("rate", [0.0, 0.15, 0.6, 1.0])
def test_spike_maps_match_pytorch_values_and_gradients(shape: tuple[int, ...], rate: float) -> None:
    """Binary spikes: pooling is an OR and nearly every window is a tie (all-zero windows send their
    gradient to the top-left element, several spikes to the first in row-major order)."""
    seed = fresh_seed()
    torch.manual_seed(seed)
    ours, theirs = both(spikes(shape, rate, seed))
    assert torch.equal(ours["y"], theirs["y"]), f"values differ (seed={seed})"
    assert torch.equal(ours["grad"], theirs["grad"]), f"gradients differ (seed={seed})"


def test_tie_rule_is_the_first_maximum_in_row_major_order() -> None:
    """Every one of the 16 binary 2×2 windows, spelled out: where the gradient goes."""
    windows = torch.tensor(
        [[(m >> 3) & 1, (m >> 2) & 1, (m >> 1) & 1, m & 1] for m in range(16)], dtype=torch.float32
    )
    x = windows.view(16, 1, 2, 2)
    ours, theirs = both(x, torch.ones(16, 1, 1, 1))
    first = [next((i for i in range(4) if windows[m, i] == 1), 0) for m in range(16)]
    expected = torch.zeros(16, 4)
    expected[torch.arange(16), torch.tensor(first)] = 1.0
    assert torch.equal(ours["grad"].view(16, 4), expected)
    assert torch.equal(theirs["grad"].view(16, 4), expected)


@pytest.mark.parametrize("shape", SHAPES)
def test_real_values_with_ties_infinities_and_nan(shape: tuple[int, ...]) -> None:
    seed = fresh_seed()
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-2, 3, shape, generator=g).float()  # small integers: many ties
    flat = x.view(-1)
    picks = torch.randperm(flat.numel(), generator=g)
    flat[picks[:3]] = float("nan")
    flat[picks[3:6]] = float("-inf")
    flat[picks[6:8]] = float("inf")
    torch.manual_seed(seed)
    ours, theirs = both(x)
    assert torch.equal(ours["y"].isnan(), theirs["y"].isnan()), f"NaN positions differ (seed={seed})"
    assert torch.equal(ours["y"].nan_to_num(0.0), theirs["y"].nan_to_num(0.0)), f"values differ (seed={seed})"
    assert torch.equal(ours["grad"], theirs["grad"]), f"gradients differ (seed={seed})"


def test_several_threads_split_the_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPIKESHIELD_KERNEL_THREADS", "3")
    seed = fresh_seed()
    torch.manual_seed(seed)
    ours, theirs = both(spikes((8, 16, 28, 28), 0.2, seed))  # 25 Ki outputs per thread
    assert torch.equal(ours["y"], theirs["y"]) and torch.equal(ours["grad"], theirs["grad"]), seed


def test_without_gradient_no_positions_are_kept() -> None:
    x = spikes((2, 3, 6, 6), 0.3, 1)
    with torch.no_grad():
        y = pool.max_pool2d(x)
    assert torch.equal(y, F.max_pool2d(x, 2)) and y.grad_fn is None


@pytest.mark.parametrize(
    "case",
    ["reference_only", "float64", "non_contiguous", "too_small", "two_dim"],
)
def test_where_the_kernel_does_not_apply_pytorch_runs(case: str) -> None:
    x = spikes((2, 3, 6, 6), 0.3, 2)
    if case == "float64":
        x = x.double()
    elif case == "non_contiguous":
        x = x.transpose(-1, -2)
    elif case == "too_small":
        x = x[..., :1, :]
    elif case == "two_dim":
        x = x[0, 0]
    if case == "reference_only":
        with kernels.reference_only():
            assert not pool.applies(x)
    else:
        assert not pool.applies(x)
    if case == "two_dim":  # PyTorch's own error
        with pytest.raises(RuntimeError, match="3D or 4D"):
            pool.max_pool2d(x)
    elif case != "too_small":
        assert torch.equal(pool.max_pool2d(x), F.max_pool2d(x, 2))


def test_layer_is_a_stateless_maxpool_and_other_configurations_use_pytorch() -> None:
    layer = MaxPool2d(2)
    assert (
        isinstance(layer, torch.nn.MaxPool2d)
        and not layer.state_dict()
        and repr(layer).startswith("MaxPool2d(")
    )
    x = spikes((2, 3, 9, 9), 0.3, 3).requires_grad_()
    y = layer(x)
    assert "MaxPool2Function" in type(y.grad_fn).__name__
    for other in (
        MaxPool2d(3),
        MaxPool2d(2, stride=1),
        MaxPool2d(2, ceil_mode=True),
        MaxPool2d(2, padding=1),
    ):
        reference = torch.nn.MaxPool2d(
            other.kernel_size, other.stride, other.padding, ceil_mode=other.ceil_mode
        )
        out = other(x)
        assert "MaxPool2Function" not in type(out.grad_fn).__name__
        assert torch.equal(out, reference(x))


def test_a_training_step_is_identical_with_and_without_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same gradients as PyTorch's max-pool means the same training: every parameter gradient of
    a spiking CNN step is bit-identical with the kernel and with PyTorch's max-pool."""
    from spikeshield.models import build_model

    images = torch.rand(6, 1, 12, 12, generator=torch.Generator().manual_seed(fresh_seed()))
    labels = torch.arange(6) % 10
    grads = []
    for use_kernel in (True, False):
        if not use_kernel:
            monkeypatch.setattr(pool, "applies", lambda x: False)
        torch.manual_seed(0)
        model = build_model("cnn", neuron="lif", input_shape=(1, 12, 12), time_steps=3, channels=8)
        F.cross_entropy(model(images), labels).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for ours, theirs in zip(*grads):
        assert torch.equal(ours, theirs)
