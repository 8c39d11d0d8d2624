"""The rectified-linear unit: the ANN that ANN-to-SNN conversion starts from."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from spikeshield.neurons.base import SpikingNeuron, State
from spikeshield.neurons.registry import register_neuron


@register_neuron("relu")
class ReLUUnit(SpikingNeuron):
    """Not a spiking neuron: the analog unit ``r[t] = max(X[t], 0)`` of an ANN, on ``[T, B, ...]``.

    Built into any architecture with ``neuron="relu"`` and ``time_steps=1``, it gives the ReLU
    twin of that spiking network (same layers, same weights layout), trained by ordinary
    backpropagation through the same trainer. ``spikeshield convert --to ann2snn`` (and
    :func:`spikeshield.models.conversion.ann_to_snn`) turns such a run into a soft-reset IF
    network (Diehl et al. IJCNN 2015; Rueckauer et al., Frontiers in Neuroscience 2017).

    It has no state, no threshold and no options; its gradient is the true one (1 where X > 0).
    """

    def __init__(self) -> None:
        super().__init__()

    def initial_state(self, x_t: Tensor) -> State:
        return {}

    def step(self, x_t: Tensor, state: State, t: int) -> tuple[Tensor, State, Tensor]:
        return torch.relu(x_t), state, x_t

    def forward(self, x: Tensor) -> Tensor:
        """``max(X, 0)`` elementwise, ``[T, B, ...]`` in and out."""
        self.check_input(x)
        return torch.relu(x)

    def fused_program(self) -> None:
        """Never a spike kernel (``SpikingSequential`` runs it, then its pool, as written)."""
        return None

    def spec(self) -> dict[str, Any]:
        return {"name": self.name}

    def extra_repr(self) -> str:
        return ""
