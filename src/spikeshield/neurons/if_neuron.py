"""Integrate-and-fire neuron (no leak)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from spikeshield.kernels.program import CHARGE_IF, NeuronProgram, SurrogateCode
from spikeshield.neurons import functional as F
from spikeshield.neurons.base import SpikingNeuron, State
from spikeshield.neurons.registry import register_neuron


@register_neuron("if")
class IFNode(SpikingNeuron):
    """Integrate-and-fire: ``H[t] = V[t−1] + X[t]``; ``S = Θ(H − V_th)``; hard or soft reset.

    With soft reset and a constant input 0 ≤ I ≤ V_th the firing rate tends to I / V_th, the
    basis of ANN-to-SNN conversion and of noise-based training (Jiang & Zhang).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def charge(self, v: Tensor, x_t: Tensor, t: int, state: State) -> Tensor:
        return F.charge_no_leak(v, x_t)

    def kernel_program(self, surrogate: SurrogateCode) -> NeuronProgram:
        return NeuronProgram(charge=CHARGE_IF, **self.kernel_fields(surrogate))
