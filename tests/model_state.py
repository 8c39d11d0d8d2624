"""Everything an evaluation could leave behind on a model, for 'nothing changed' assertions."""

from typing import Any

import torch
from torch import nn


def model_state(model: nn.Module) -> dict[str, Any]:
    """Modes, attribute identities, parameters, buffers, requires_grad and gradients."""
    return {
        "training": {n: m.training for n, m in model.named_modules()},
        "attributes": {n: {k: id(v) for k, v in vars(m).items()} for n, m in model.named_modules()},
        "modules": [id(m) for m in model.modules()],
        "tensors": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "requires_grad": {k: p.requires_grad for k, p in model.named_parameters()},
        "grads": {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()},
    }


def assert_unchanged(before: dict[str, Any], model: nn.Module) -> None:
    """Assert that ``model`` is bit for bit in the state ``before`` recorded."""
    after = model_state(model)
    for key in ("training", "attributes", "modules", "requires_grad"):
        assert after[key] == before[key], f"{key} changed"
    assert after["tensors"].keys() == before["tensors"].keys()
    for name, value in before["tensors"].items():
        assert torch.equal(after["tensors"][name], value), f"{name} changed"
    for name, grad in before["grads"].items():
        now = after["grads"][name]
        assert (grad is None and now is None) or (
            grad is not None and now is not None and torch.equal(grad, now)
        ), f"gradient of {name} changed"
