"""Leaky integrate-and-fire neurons with exponential (or multiplicative) leak."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from spikeshield import validate
from spikeshield.errors import UsageError
from spikeshield.kernels.program import (
    CHARGE_LIF,
    CHARGE_LIF_NO_DECAY_INPUT,
    CHARGE_MULT,
    NeuronProgram,
    SurrogateCode,
)
from spikeshield.neurons import functional as F
from spikeshield.neurons.base import SpikingNeuron, State
from spikeshield.neurons.registry import register_neuron


class ExponentialLeak(SpikingNeuron):
    """Shared base of neurons whose charge is the exponential leak of LIF.

    ``decay_input=True``:  ``H = V + (X − (V − V_reset)) / τ``;
    ``decay_input=False``: ``H = V − (V − V_reset) / τ + X``.
    With ``learnable_tau`` the membrane constant is learned as ``1/τ = sigmoid(w)`` (PLIF,
    Fang et al. 2021).
    """

    def __init__(
        self,
        *,
        tau: float = 2.0,
        decay_input: bool = True,
        learnable_tau: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        tau = validate.finite("tau", tau)
        if tau <= 1.0:
            raise UsageError(
                f"tau must be > 1 for the exponential leak (1/tau is the fraction leaked per step), got {tau}"
            )
        self.decay_input = validate.boolean("decay_input", decay_input)
        self.learnable_tau = validate.boolean("learnable_tau", learnable_tau)
        self._tau_init = tau
        if learnable_tau:
            self.tau_logit = nn.Parameter(torch.tensor(-math.log(tau - 1.0)))
        else:
            self.tau_logit = None

    @property
    def inv_tau(self) -> Tensor | float:
        """1/τ: a float, or a 0-d tensor when τ is learned."""
        if self.tau_logit is None:
            return 1.0 / self._tau_init
        return torch.sigmoid(self.tau_logit)

    @property
    def tau(self) -> float:
        inv = self.inv_tau
        return 1.0 / float(inv)

    def charge(self, v: Tensor, x_t: Tensor, t: int, state: State) -> Tensor:
        return F.charge_exponential(v, x_t, self.inv_tau, self.v_reset, self.decay_input)

    def learned_values(self) -> dict[str, float]:
        if self.tau_logit is None:
            return {}
        return {"tau": 1.0 / float(torch.sigmoid(self.tau_logit.detach()))}

    def kernel_fields(self, surrogate: SurrogateCode) -> dict[str, Any]:
        """Adds the exponential charge: fixed 1/τ, or the learnable ``sigmoid(w)`` (differentiable)."""
        fields = super().kernel_fields(surrogate)
        fields["charge"] = CHARGE_LIF if self.decay_input else CHARGE_LIF_NO_DECAY_INPUT
        if self.tau_logit is None:
            return {**fields, "beta": 1.0 / self._tau_init}
        inv_tau = torch.sigmoid(self.tau_logit)
        return {**fields, "beta": float(inv_tau.detach()), "inv_tau": inv_tau}

    def kernel_program(self, surrogate: SurrogateCode) -> NeuronProgram | None:
        return NeuronProgram(**self.kernel_fields(surrogate))

    def spec(self) -> dict[str, Any]:
        return {
            **super().spec(),
            "tau": self._tau_init,
            "decay_input": self.decay_input,
            "learnable_tau": self.learnable_tau,
        }


@register_neuron("lif")
class LIFNode(ExponentialLeak):
    """Leaky integrate-and-fire.

    Exponential forms (default, τ = 2): ``H = V + (X − (V − V_reset))/τ`` (``decay_input``) or
    ``H = V − (V − V_reset)/τ + X``. Multiplicative form, selected by ``decay=λ``:
    ``H = λ·V + X`` (as in RSSNN, Ding et al. ICML 2024, λ = 0.99).

    With hard reset to 0 and constant input I the potential after n steps is
    ``I·(1 − (1 − 1/τ)^n)`` (decay_input) — the closed form the tests check firing rates against.
    """

    def __init__(
        self,
        *,
        tau: float | None = None,
        decay_input: bool | None = None,
        learnable_tau: bool | None = None,
        decay: float | None = None,
        **kwargs: Any,
    ) -> None:
        if decay is not None:
            given = [
                n
                for n, v in (("tau", tau), ("decay_input", decay_input), ("learnable_tau", learnable_tau))
                if v is not None
            ]
            if given:
                raise UsageError(
                    f"lif: 'decay' selects the multiplicative form H = decay·V + X, which has no "
                    f"{', '.join(given)}"
                )
            decay = validate.in_range("decay", decay, 0.0, 1.0, low_open=True)
        super().__init__(
            tau=2.0 if tau is None else tau,
            decay_input=True if decay_input is None else decay_input,
            learnable_tau=False if learnable_tau is None else learnable_tau,
            **kwargs,
        )
        self.decay = decay

    def charge(self, v: Tensor, x_t: Tensor, t: int, state: State) -> Tensor:
        if self.decay is not None:
            return F.charge_multiplicative(v, x_t, self.decay)
        return super().charge(v, x_t, t, state)

    def kernel_program(self, surrogate: SurrogateCode) -> NeuronProgram | None:
        if self.decay is None:
            return super().kernel_program(surrogate)
        fields = SpikingNeuron.kernel_fields(self, surrogate)
        return NeuronProgram(charge=CHARGE_MULT, decay=float(self.decay), **fields)

    def spec(self) -> dict[str, Any]:
        spec = super().spec()
        if self.decay is not None:
            for key in ("tau", "decay_input", "learnable_tau"):
                spec.pop(key)
            spec["decay"] = self.decay
        return spec


@register_neuron("plif")
class PLIFNode(ExponentialLeak):
    """Parametric LIF (Fang et al. ICCV 2021): exponential LIF with learnable τ, ``1/τ = sigmoid(w)``."""

    fixed_options = frozenset({"learnable_tau"})

    def __init__(self, *, tau: float = 2.0, decay_input: bool = True, **kwargs: Any) -> None:
        super().__init__(tau=tau, decay_input=decay_input, learnable_tau=True, **kwargs)

    def spec(self) -> dict[str, Any]:
        spec = super().spec()
        spec.pop("learnable_tau")
        return spec
