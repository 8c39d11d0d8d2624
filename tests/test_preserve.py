"""preserved(): a model comes out of the block exactly as it went in, module by module."""

import pytest
import torch
from torch import nn

from spikeshield.preserve import preserved

from .model_state import assert_unchanged, model_state


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3))
    model(torch.randn(8, 4)).sum().backward()  # non-trivial running stats and gradients
    model[1].eval()  # frozen batch norm inside a model in train mode
    model[3].weight.requires_grad_(False)
    return model


def _vandalise(model: nn.Module) -> None:
    model.train()  # one model-wide switch: unfreezes the batch norm
    model(torch.randn(8, 4))  # running stats and num_batches_tracked move
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[0].bias.grad.zero_()
    model[3].weight.requires_grad_(True)
    model[0].weight.grad = None
    model[2] = nn.Tanh()
    model[0].forward = lambda x: x  # type: ignore[method-assign]
    model[1].register_buffer("extra", torch.ones(1))


def test_everything_is_restored_bit_for_bit_also_after_an_exception():
    model = _model()
    before = model_state(model)
    with preserved(model):
        _vandalise(model)
    assert_unchanged(before, model)
    with pytest.raises(RuntimeError, match="half-way"), preserved(model):
        _vandalise(model)
        raise RuntimeError("failed half-way")
    assert_unchanged(before, model)
    assert not model[1].training and model[0].training  # the mix of modes, module by module


def test_nested_blocks_leave_the_restore_to_the_outermost():
    model = _model()
    before = model_state(model)
    with preserved(model):
        with preserved(model):
            model.train()
        assert model[1].training  # the inner block did not snapshot a second time
    assert_unchanged(before, model)
