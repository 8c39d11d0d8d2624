"""Linear-leakage LIF (Che, Cao, Feng, Chen, Wang, ICACT 2023)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from spikeshield import validate
from spikeshield.errors import UsageError
from spikeshield.kernels.program import CHARGE_LINEAR, CHARGE_LINEAR_NO_FLOOR, NeuronProgram, SurrogateCode
from spikeshield.neurons import functional as F
from spikeshield.neurons.base import SpikingNeuron, State
from spikeshield.neurons.registry import register_neuron


@register_neuron("linear-lif")
class LinearLIFNode(SpikingNeuron):
    """LIF whose leak is a constant subtraction instead of an exponential decay.

    ``H[t] = max(V[t−1] − λ_leak, V_floor) + X[t]``, ``S = Θ(H − V_th)``.

    Che et al. (ICACT 2023) state the leak is linear and that the firing rate falls as the leak
    parameter grows; the exact equation is our reconstruction from the abstract (documented in
    ``docs/neurons.md``). For a constant drive I > λ_leak and soft reset the rate is
    ≈ (I − λ_leak)/V_th; the floor (default: ``v_reset``; ``None`` for no floor) stops the
    potential leaking below rest.

    Args:
        leak: λ_leak ≥ 0, the potential lost per step.
        floor: lower bound after the leak; ``"v_reset"`` (default) or a number, or ``None``.
    """

    def __init__(self, *, leak: float = 0.1, floor: float | str | None = "v_reset", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.leak = validate.non_negative("leak", leak)
        if floor == "v_reset":
            self.floor: float | None = self.v_reset
        elif floor is None or (isinstance(floor, str) and floor.lower() == "none"):
            self.floor = None
        elif isinstance(floor, str):
            raise UsageError(f"floor must be a number, 'v_reset' or None, got {floor!r}")
        else:
            self.floor = validate.finite("floor", floor)

    def charge(self, v: Tensor, x_t: Tensor, t: int, state: State) -> Tensor:
        return F.charge_linear(v, x_t, self.leak, self.floor)

    def kernel_program(self, surrogate: SurrogateCode) -> NeuronProgram:
        fields = self.kernel_fields(surrogate)
        if self.floor is None:
            return NeuronProgram(charge=CHARGE_LINEAR_NO_FLOOR, leak=float(self.leak), **fields)
        return NeuronProgram(charge=CHARGE_LINEAR, leak=float(self.leak), floor=float(self.floor), **fields)

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "leak": self.leak, "floor": self.floor}
