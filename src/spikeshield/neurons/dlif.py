"""DLIF (Ding, Pan, Liu, Yu, Huang, "Robust Stable Spiking Neural Networks", ICML 2024)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from spikeshield import validate
from spikeshield.errors import UsageError
from spikeshield.kernels.program import CHARGE_MULT, NeuronProgram, SurrogateCode
from spikeshield.neurons import functional as F
from spikeshield.neurons.base import SpikingNeuron, State
from spikeshield.neurons.registry import register_neuron


@register_neuron("dlif")
class DLIFNode(SpikingNeuron):
    """LIF with a learnable per-step input gain: ``H[t] = λ·V[t−1] + p[t]·X[t]``.

    p is a learnable vector of length T per layer, initialised to 1; λ = 0.99, V_th = 1, hard
    reset to 0 with the gradient through the reset, triangle surrogate γ = 1 (the paper's
    defaults, from its official code DingJianhao/stable-snn).

    Args:
        time_steps: T, the length of p (input with another T is rejected).
        decay: λ in (0, 1].
        gain_init: initial value of every p[t].
        learnable_gain: learn p (default True).
    """

    default_surrogate = "triangle"
    needs_time_steps = True

    def __init__(
        self,
        *,
        time_steps: int,
        decay: float = 0.99,
        gain_init: float = 1.0,
        learnable_gain: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        validate.positive_int("time_steps", time_steps)
        self.decay = validate.in_range("decay", decay, 0.0, 1.0, low_open=True)
        self._gain_init = validate.finite("gain_init", gain_init)
        self.time_steps = time_steps
        self.learnable_gain = learnable_gain
        gain = torch.full((time_steps,), self._gain_init)
        self.gain: Tensor
        if learnable_gain:
            self.gain = nn.Parameter(gain)
        else:
            self.register_buffer("gain", gain)

    def check_input(self, x: Tensor) -> None:
        super().check_input(x)
        if x.shape[0] != self.time_steps:
            raise UsageError(
                f"dlif was built for T = {self.time_steps} time steps (its gain p[t] has that "
                f"length) but got input with T = {x.shape[0]}"
            )

    def input_current(self, x_t: Tensor, t: int) -> Tensor:
        return self.gain[t] * x_t

    def charge(self, v: Tensor, x_t: Tensor, t: int, state: State) -> Tensor:
        return F.charge_multiplicative(v, x_t, self.decay)

    def kernel_program(self, surrogate: SurrogateCode) -> NeuronProgram:
        fields = self.kernel_fields(surrogate)
        return NeuronProgram(charge=CHARGE_MULT, decay=float(self.decay), gain=self.gain, **fields)

    def spec(self) -> dict[str, Any]:
        return {
            **super().spec(),
            "time_steps": self.time_steps,
            "decay": self.decay,
            "gain_init": self._gain_init,
            "learnable_gain": self.learnable_gain,
        }
