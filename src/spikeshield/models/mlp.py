"""Multi-layer perceptron."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from torch import nn

from spikeshield.errors import UsageError
from spikeshield.models.base import Backbone, register_model
from spikeshield.models.layers import TimeDistributed
from spikeshield.neurons import NeuronFactory


@register_model("mlp")
def mlp(
    input_shape: tuple[int, int, int],
    make_neuron: NeuronFactory,
    hidden: Sequence[int] = (256, 256),
    batch_norm: bool = True,
) -> Backbone:
    """Flatten → [Linear → (BN) → neuron] × len(hidden); the readout adds the last Linear."""
    hidden = [int(h) for h in hidden]
    if not hidden or min(hidden) < 1:
        raise UsageError(f"mlp hidden sizes must be positive integers, got {hidden}")

    def linear(i: int, o: int) -> list[nn.Module]:
        return [nn.Linear(i, o, bias=not batch_norm)] + ([nn.BatchNorm1d(o)] if batch_norm else [])

    stem = nn.Sequential(nn.Flatten(), *linear(math.prod(input_shape), hidden[0]))
    body: list[nn.Module] = [make_neuron()]
    for i, o in itertools.pairwise(hidden):
        body += [TimeDistributed(*linear(i, o)), make_neuron()]
    return Backbone(stem, nn.Sequential(*body))
