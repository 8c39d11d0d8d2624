"""Before attacking, the input gradient must be non-zero and finite; the error names the layer."""

import pytest
import torch
from torch import nn

from spikeshield.attacks import InputGradientError, assert_input_gradient, evaluate_robustness
from spikeshield.attacks.gradient import parse_gradient_spec
from spikeshield.neurons import SpikingNeuron, build_surrogate

BPTT = parse_gradient_spec("bptt")


def _batch(data, n=16):
    return data.subset(n).tensors()


def test_a_working_gradient_passes(digits_lif, digits_test):
    x, y = _batch(digits_test)
    for spec in ("bptt", "bptr", "surrogate:sigmoid:1", "assg:0.42"):
        assert_input_gradient(digits_lif, x, y, parse_gradient_spec(spec))


def test_a_surrogate_that_passes_nothing_is_named(digits_lif, digits_test):
    """The first spiking layer's surrogate is a rectangle too narrow for any potential to fall in:
    the error names that layer, whose output still receives a gradient."""
    x, y = _batch(digits_test)
    first = next(m for m in digits_lif.modules() if isinstance(m, SpikingNeuron))
    first.surrogate = build_surrogate("rectangle:1e-12")
    with pytest.raises(InputGradientError, match=r"zero for every sample .* at layer 'body\.0' \(LIFNode\)"):
        assert_input_gradient(digits_lif, x, y, BPTT)
    with pytest.raises(InputGradientError, match="body.0"):
        evaluate_robustness(digits_lif, digits_test.subset(20), attacks=["pgd"], eps=[0.1])
    # another attacker gradient sees through it; an adaptive set with one working member is fine
    assert_input_gradient(digits_lif, x, y, parse_gradient_spec("surrogate:sigmoid:4"))
    result = evaluate_robustness(
        digits_lif,
        digits_test.subset(20),
        attacks=["fgsm"],
        eps=[0.1],
        gradient="adaptive:bptt,bptr",
        checks=False,
    )
    assert any("without a usable gradient" in w and "'bptt'" in w for w in result["warnings"])


class Root(nn.Module):
    """√x: its gradient at x = 0 is infinite."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sqrt()


def test_a_non_finite_gradient_is_named():
    model = nn.Sequential(nn.Flatten(), Root(), nn.Linear(4, 3))
    x = torch.zeros(2, 1, 2, 2)
    with pytest.raises(InputGradientError, match=r"not finite .* at layer '1' \(Root\)"):
        assert_input_gradient(model, x, torch.zeros(2, dtype=torch.long), BPTT)
