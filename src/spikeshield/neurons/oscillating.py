"""Oscillating LIF and the "fake neuron" defence (Jiang & Zhang, arXiv 2211.02223)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from spikeshield import streams, validate
from spikeshield.errors import UsageError
from spikeshield.kernels.program import (
    OSC_MEMBRANE,
    OSC_THRESHOLD,
    NeuronProgram,
    Oscillations,
    SurrogateCode,
)
from spikeshield.neurons.base import State
from spikeshield.neurons.lif import ExponentialLeak
from spikeshield.neurons.registry import register_neuron

TARGETS = ("membrane", "threshold")


@register_neuron("oscillating-lif")
class OscillatingLIFNode(ExponentialLeak):
    """LIF whose membrane potential (or threshold) oscillates.

    ``membrane``:  ``H[t] = V + (X − (V − V_reset))/τ + A·sin(2πf·t + φ)``, ``S = Θ(H − V_th)``;
    ``threshold``: ``S = Θ(H − V_th − A·sin(2πf·t + φ))`` with the plain LIF charge.
    t counts steps from 0; f is in cycles per step; φ in radians, or random per neuron and per
    call (``random_phase``, a stochastic model: attack it with EOT).

    Defence mode: set any of ``backward_amplitude`` / ``backward_frequency`` / ``backward_phase``.
    The forward keeps the true oscillation but the surrogate gradient is evaluated at the
    potential of a *fake* neuron with that oscillation, so an attacker differentiating the model
    follows the fake neuron's gradient. The paper's claim and this mechanism are reconstructed
    from its abstract. :func:`true_gradient` switches every such neuron of a model to the true
    forward's gradient (the adaptive attacker's view).
    """

    def __init__(
        self,
        *,
        amplitude: float = 0.2,
        frequency: float = 0.25,
        phase: float = 0.0,
        random_phase: bool = False,
        target: str = "membrane",
        backward_amplitude: float | None = None,
        backward_frequency: float | None = None,
        backward_phase: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.amplitude = validate.non_negative("amplitude", amplitude)
        self.frequency = validate.finite("frequency", frequency)
        self.phase = validate.finite("phase", phase)
        self.random_phase = validate.boolean("random_phase", random_phase)
        if target not in TARGETS:
            raise UsageError(f"target must be one of {TARGETS}, got {target!r}")
        self.target = target
        self.backward_amplitude = (
            None if backward_amplitude is None else validate.finite("backward_amplitude", backward_amplitude)
        )
        self.backward_frequency = (
            None if backward_frequency is None else validate.finite("backward_frequency", backward_frequency)
        )
        self.backward_phase = (
            None if backward_phase is None else validate.finite("backward_phase", backward_phase)
        )
        #: when False, gradients follow the true forward even in defence mode
        self.fake_gradient = True

    @property
    def has_fake_gradient(self) -> bool:
        """True when the backward path uses a different oscillation from the forward."""
        return any(
            b is not None and b != f
            for b, f in (
                (self.backward_amplitude, self.amplitude),
                (self.backward_frequency, self.frequency),
                (self.backward_phase, self.phase),
            )
        )

    def initial_state(self, x_t: Tensor) -> State:
        state = super().initial_state(x_t)
        if self.random_phase:
            state["phase"] = streams.rand_like(x_t) * (2.0 * math.pi)
        return state

    def _oscillation(self, t: int, state: State, backward: bool) -> Tensor | float:
        amplitude, frequency, phase = self.amplitude, self.frequency, self.phase
        fixed_phase_b = False
        if backward:
            if self.backward_amplitude is not None:
                amplitude = self.backward_amplitude
            if self.backward_frequency is not None:
                frequency = self.backward_frequency
            if self.backward_phase is not None:
                phase, fixed_phase_b = self.backward_phase, True
        angle = 2.0 * math.pi * frequency * t
        if self.random_phase and not fixed_phase_b:
            return amplitude * torch.sin(angle + state["phase"])
        return amplitude * math.sin(angle + phase)

    def charge(self, v: Tensor, x_t: Tensor, t: int, state: State) -> Tensor:
        h = super().charge(v, x_t, t, state)
        if self.target == "membrane":
            h = h + self._oscillation(t, state, backward=False)
        return h

    def fire(self, f: Tensor, t: int, state: State) -> Tensor:
        osc = self._oscillation(t, state, backward=False)
        use_fake = self.fake_gradient and self.has_fake_gradient
        if self.target == "membrane":
            x = f - self.v_threshold
            if not use_fake:
                return self.surrogate(x)
            return self.surrogate(x, x - osc + self._oscillation(t, state, backward=True))
        x = f - self.v_threshold - osc
        if not use_fake:
            return self.surrogate(x)
        return self.surrogate(x, x + osc - self._oscillation(t, state, backward=True))

    def kernel_program(self, surrogate: SurrogateCode) -> NeuronProgram:
        return NeuronProgram(
            **self.kernel_fields(surrogate),
            osc_target=OSC_MEMBRANE if self.target == "membrane" else OSC_THRESHOLD,
            fake_gradient=bool(self.fake_gradient and self.has_fake_gradient),
        )

    def kernel_oscillations(self, x: Tensor, program: NeuronProgram) -> Oscillations:
        """The forward (and fake backward) oscillation of all T steps, as :meth:`run` computes them.

        Draws the random phase through :meth:`initial_state` (once per call, as ``run`` does) and
        evaluates :meth:`_oscillation`, so the values are the reference's to the bit.
        """
        steps = x.shape[0]
        state = self.initial_state(x[0]) if self.random_phase else {}

        def evaluate(backward: bool) -> list[float] | Tensor:
            values = [self._oscillation(t, state, backward=backward) for t in range(steps)]
            if any(isinstance(v, Tensor) for v in values):
                return torch.stack(
                    [v if isinstance(v, Tensor) else torch.full_like(x[0], v) for v in values]
                ).contiguous()
            return [float(v) for v in values]

        return Oscillations(evaluate(False), evaluate(True) if program.fake_gradient else None)

    def spec(self) -> dict[str, Any]:
        return {
            **super().spec(),
            "amplitude": self.amplitude,
            "frequency": self.frequency,
            "phase": self.phase,
            "random_phase": self.random_phase,
            "target": self.target,
            "backward_amplitude": self.backward_amplitude,
            "backward_frequency": self.backward_frequency,
            "backward_phase": self.backward_phase,
        }


@contextlib.contextmanager
def true_gradient(model: nn.Module) -> Iterator[int]:
    """Within this block, every fake-gradient neuron of ``model`` backpropagates its true forward.

    Yields the number of neurons switched (0 for an undefended model).
    """
    switched = [
        m
        for m in model.modules()
        if isinstance(m, OscillatingLIFNode) and m.fake_gradient and m.has_fake_gradient
    ]
    for m in switched:
        m.fake_gradient = False
    try:
        yield len(switched)
    finally:
        for m in switched:
            m.fake_gradient = True
