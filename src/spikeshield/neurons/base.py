"""The one neuron core every spikeshield neuron is a configuration of.

A step is four pluggable parts with the state passed explicitly::

    X'[t] = input_current(X[t], t)          # identity, or DLIF's learnable gain p[t]·X[t]
    H[t]  = charge(V[t−1], X'[t], t)       # no leak / exponential / multiplicative / linear (+osc.)
    F[t]  = prefire(H[t])                  # identity, or KLIF's ReLU(k·H)
    S[t]  = Θ(F[t] − V_th)                 # surrogate gradient g in the backward pass
    V[t]  = reset(F[t], S[t])              # hard / soft, optionally detached

:meth:`SpikingNeuron.step` is a pure function of ``(X[t], state, t)`` (the module holds only
parameters), and :meth:`SpikingNeuron.forward` runs it over ``T`` from a fresh state on every
call, so no state leaks between batches or between the many calls an attack makes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from spikeshield import validate
from spikeshield.errors import UsageError
from spikeshield.kernels import fused_forward, note_run
from spikeshield.kernels.program import NeuronProgram, Oscillations, SurrogateCode, describes_itself
from spikeshield.neurons import functional as F
from spikeshield.neurons.surrogates import Surrogate, SurrogateSpec, build_surrogate, smoothing

State = dict[str, Tensor]
RESET_MODES = ("hard", "soft")
#: the parts a kernel program stands for: redefining one below the class that wrote
#: ``kernel_program`` (or replacing it on an instance) sends the neuron to the reference loop
KERNEL_PARTS = ("input_current", "charge", "prefire", "fire", "reset", "step", "initial_state", "run")


@dataclass
class NeuronOutput:
    """What :meth:`SpikingNeuron.run` returns."""

    spikes: Tensor
    """``[T, B, ...]`` spikes (0/1 in the input's dtype)."""
    state: State
    """State after the last step (``{"v": V[T]}`` for most neurons)."""
    h: Tensor | None = None
    """``[T, B, ...]`` pre-fire potential F[t] (after any pre-fire transform), if recorded."""
    v: Tensor | None = None
    """``[T, B, ...]`` post-reset potential V[t], if recorded."""


class SpikingNeuron(nn.Module):
    """Base class of all multi-step neurons. Input ``[T, B, ...]`` → spikes of the same shape.

    Args:
        v_threshold: firing threshold V_th.
        v_reset: resting potential; also the target of a hard reset.
        v_init: potential at t = 0 (default ``v_reset``).
        surrogate: surrogate gradient spec (name, ``"name:param"``, dict or instance).
        reset: ``"hard"`` (to ``v_reset``) or ``"soft"`` (subtract V_th).
        detach_reset: stop the gradient through S in the reset (as in SpikingJelly).
    """

    #: registry name, set by :func:`spikeshield.neurons.registry.register_neuron`
    name: ClassVar[str] = ""
    #: surrogate used when none is given
    default_surrogate: ClassVar[str] = "sigmoid"
    #: True for neurons whose construction needs ``time_steps`` (DLIF)
    needs_time_steps: ClassVar[bool] = False
    #: options of a base class that this neuron fixes itself and does not accept
    fixed_options: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        *,
        v_threshold: float = 1.0,
        v_reset: float = 0.0,
        v_init: float | None = None,
        surrogate: SurrogateSpec = None,
        reset: str = "hard",
        detach_reset: bool = False,
    ) -> None:
        super().__init__()
        self.v_threshold = validate.finite("v_threshold", v_threshold)
        self.v_reset = validate.finite("v_reset", v_reset)
        if self.v_threshold <= self.v_reset:
            raise UsageError(f"v_threshold ({v_threshold}) must be above v_reset ({v_reset})")
        self.v_init = self.v_reset if v_init is None else validate.finite("v_init", v_init)
        self.surrogate: Surrogate = build_surrogate(surrogate, default=self.default_surrogate)
        if reset not in RESET_MODES:
            raise UsageError(f"reset must be one of {RESET_MODES}, got {reset!r}")
        self.reset_mode = reset
        self.detach_reset = validate.boolean("detach_reset", detach_reset)

    # ----------------------------------------------------------------- the pluggable parts
    def initial_state(self, x_t: Tensor) -> State:
        """Fresh state for one sequence, shaped like one time step of the input."""
        return {"v": torch.full_like(x_t, self.v_init)}

    def input_current(self, x_t: Tensor, t: int) -> Tensor:
        """Transform of the input current before charging (identity by default)."""
        return x_t

    def charge(self, v: Tensor, x_t: Tensor, t: int, state: State) -> Tensor:
        """H[t] from V[t−1] and X[t]."""
        raise NotImplementedError

    def prefire(self, h: Tensor) -> Tensor:
        """Transform of H before firing and reset (identity by default)."""
        return h

    def fire(self, f: Tensor, t: int, state: State) -> Tensor:
        """S[t] = Θ(F − V_th) with the surrogate gradient in the backward pass."""
        return self.surrogate(f - self.v_threshold)

    def reset(self, f: Tensor, s: Tensor) -> Tensor:
        """V[t] from F[t] and S[t]."""
        if self.detach_reset:
            s = s.detach()
        if self.reset_mode == "hard":
            return F.reset_hard(f, s, self.v_reset)
        return F.reset_soft(f, s, self.v_threshold)

    # ----------------------------------------------------------------- the step and the loop
    def step(self, x_t: Tensor, state: State, t: int) -> tuple[Tensor, State, Tensor]:
        """One pure step: ``(X[t], state[t−1], t) → (S[t], state[t], F[t])``."""
        x_t = self.input_current(x_t, t)
        h = self.charge(state["v"], x_t, t, state)
        f = self.prefire(h)
        s = self.fire(f, t, state)
        new_state = dict(state)
        new_state["v"] = self.reset(f, s)
        return s, new_state, f

    def check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise UsageError(f"{self.name or type(self).__name__} expects a tensor, got {type(x).__name__}")
        if x.dim() < 2:
            raise UsageError(
                f"{self.name or type(self).__name__} expects input of shape [T, B, ...] "
                f"(time first), got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise UsageError(
                f"{self.name or type(self).__name__} expects a floating-point input, got {x.dtype}"
            )
        if x.shape[0] < 1:
            raise UsageError("input has T = 0 time steps")

    def run(self, x: Tensor, state: State | None = None, record: bool = False) -> NeuronOutput:
        """Run over all T steps of ``x`` (``[T, B, ...]``), from ``state`` or a fresh one.

        With ``record=True`` the pre-fire potentials F[t] and post-reset potentials V[t] are
        returned as well (for analysis and perturbation measurements).
        """
        self.check_input(x)
        # unbind (not x[t]): its backward stacks the T gradients once, where indexing would
        # build and fill a full-size zero tensor for every step
        steps = x.unbind(0)
        if state is None:
            state = self.initial_state(steps[0])
        spikes, hs, vs = [], [], []
        for t, x_t in enumerate(steps):
            s, state, f = self.step(x_t, state, t)
            spikes.append(s)
            if record:
                hs.append(f)
                if "v" in state:
                    vs.append(state["v"])
        return NeuronOutput(
            spikes=torch.stack(spikes),
            state=state,
            h=torch.stack(hs) if record else None,
            v=torch.stack(vs) if vs else None,
        )

    def forward(self, x: Tensor) -> Tensor:
        """Spikes ``[T, B, ...]`` for input currents ``[T, B, ...]``, from a fresh state.

        Runs a fused kernel when :mod:`spikeshield.kernels` supports this neuron's current
        configuration on ``x``'s device and dtype (identical spikes), else the reference loop.
        """
        spikes = fused_forward(self, x)
        if spikes is not None:
            return spikes
        note_run(self, None)
        return self.run(x).spikes

    # ----------------------------------------------------------------- fused kernels
    def kernel_program(self, surrogate: SurrogateCode) -> NeuronProgram | None:
        """Opt-in to the fused kernels: this neuron, as configured now, in kernel terms.

        The one place a neuron opts in (see ``spikeshield.kernels.program``): return a
        :class:`~spikeshield.kernels.program.NeuronProgram` computing exactly this class's parts,
        with ``surrogate`` (the current surrogate's code) and :meth:`kernel_fields`. The default,
        None, runs the reference loop :meth:`run`: a new neuron needs nothing else.
        """
        return None

    def kernel_fields(self, surrogate: SurrogateCode) -> dict[str, Any]:
        """The program fields every neuron shares: surrogate, reset, threshold and potentials."""
        return {
            "surrogate": surrogate,
            "hard_reset": self.reset_mode == "hard",
            "detach_reset": bool(self.detach_reset),
            "v_threshold": float(self.v_threshold),
            "v_reset": float(self.v_reset),
            "v_init": float(self.v_init),
        }

    def fused_program(self) -> NeuronProgram | None:
        """:meth:`kernel_program` where it still describes this neuron, else None.

        None inside ``smooth_spikes()``, for a surrogate without a kernel code, and where a
        subclass (or the instance) redefines one of ``KERNEL_PARTS`` below the class that wrote
        ``kernel_program``.
        """
        if smoothing() or not describes_itself(self, "kernel_program", KERNEL_PARTS):
            return None
        surrogate = self.surrogate.fused_code()
        return None if surrogate is None else self.kernel_program(surrogate)

    def kernel_oscillations(self, x: Tensor, program: NeuronProgram) -> Oscillations | None:
        """The oscillation the kernel adds at each step (None: the neuron has none)."""
        return None

    # ----------------------------------------------------------------- description
    def learned_values(self) -> dict[str, float]:
        """Current values of the neuron's learned scalar constants, by name (KLIF's ``k``,
        PLIF's ``tau``); empty for neurons that learn none. Recorded per epoch in a run's
        ``metrics.json``."""
        return {}

    def spec(self) -> dict[str, Any]:
        """JSON-able constructor options of this neuron (``name`` plus what ``build_neuron``
        takes), so that ``build_neuron(**spec)`` rebuilds it; learned values live in the weights."""
        return {
            "name": self.name,
            "v_threshold": self.v_threshold,
            "v_reset": self.v_reset,
            "v_init": self.v_init,
            "surrogate": self.surrogate.spec(),
            "reset": self.reset_mode,
            "detach_reset": self.detach_reset,
        }

    def extra_repr(self) -> str:
        spec = self.spec()
        spec.pop("name", None)
        spec["surrogate"] = repr(self.surrogate)
        return ", ".join(f"{k}={v}" for k, v in spec.items())
