"""Multi-layer perceptron."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from torch import nn

from spikeshield import validate
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
    sizes = list(hidden) if isinstance(hidden, (list, tuple)) else []
    if not sizes or not all(validate.is_int(h) and h >= 1 for h in sizes):
        raise UsageError(f"mlp hidden sizes must be positive integers (a list, e.g. [256]), got {hidden!r}")
    hidden = sizes

    def linear(i: int, o: int) -> list[nn.Module]:
        return [nn.Linear(i, o, bias=not batch_norm)] + ([nn.BatchNorm1d(o)] if batch_norm else [])

    stem = nn.Sequential(nn.Flatten(), *linear(math.prod(input_shape), hidden[0]))
    body: list[nn.Module] = [make_neuron()]
    for i, o in itertools.pairwise(hidden):
        body += [TimeDistributed(*linear(i, o)), make_neuron()]
    return Backbone(stem, nn.Sequential(*body))
