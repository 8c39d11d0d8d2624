from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeshield.neurons import SpikingNeuron


def run_recording(model: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Logits and the ``[T, B, ...]`` spikes of every neuron layer, in execution order."""
    spikes: list[Tensor] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: spikes.append(out))
        for m in model.modules()
        if isinstance(m, SpikingNeuron)
    ]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    return logits, spikes


def normalised(model, x: Tensor) -> Tensor:
    """What the NIR graph takes: the model's per-channel normalisation applied to ``x``."""
    return (x - model.norm_mean) / model.norm_std
