"""Lowering a neuron module to the flat description the fused kernels execute.

Every registered neuron is a configuration of one multi-step recurrence (see
``spikeshield.neurons.base``)::

    X'[t] = p[t]·X[t]                                   (DLIF gain; 1 otherwise)
    H[t]  = charge(V[t−1], X'[t]) + A·sin(2πf·t + φ)     (oscillation only for oscillating-lif)
    F[t]  = H[t]  or  ReLU(k·H[t])                       (KLIF)
    S[t]  = Θ(F[t] − V_th [− oscillation])               (surrogate g in the backward pass)
    V[t]  = F(1 − S) + V_reset·S  or  F − V_th·S         (÷ k with KLIF's scale_reset)

:func:`lower` reads a neuron's *current* configuration (its surrogate, reset, learnable tensors,
the oscillating neuron's fake-gradient switch...) at call time and returns a
:class:`NeuronProgram`, or ``None`` when the fused kernels do not implement it (a subclass that
overrides a part, an unknown surrogate, a part replaced on the instance) — the caller then uses
the reference loop :meth:`SpikingNeuron.run`.

Random quantities (the oscillating neuron's random phase, the noisy neuron's noise) are not
sampled by the kernels: :func:`oscillations` and the noisy kernels draw them here with exactly
the reference's RNG calls, so fused and reference spikes are identical for the same seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from spikeshield import streams

if TYPE_CHECKING:
    from spikeshield.neurons.base import SpikingNeuron
    from spikeshield.neurons.surrogates import Surrogate

# charge kinds (mirrored by the C and Triton kernels)
CHARGE_IF = 0
CHARGE_LIF = 1  # H = V + (X − (V − V_reset))·β
CHARGE_LIF_NO_DECAY_INPUT = 2  # H = V − (V − V_reset)·β + X
CHARGE_MULT = 3  # H = λ·V + X
CHARGE_LINEAR = 4  # H = max(V − leak, floor) + X
CHARGE_LINEAR_NO_FLOOR = 5  # H = (V − leak) + X

# surrogates
SG_SIGMOID, SG_ATAN, SG_RECTANGLE, SG_TRIANGLE, SG_GAUSSIAN = 0, 1, 2, 3, 4

# where an oscillation acts
OSC_NONE, OSC_MEMBRANE, OSC_THRESHOLD = 0, 1, 2

#: the parts a neuron instance must not have replaced for the fused path to be valid
_PART_NAMES = ("input_current", "charge", "prefire", "fire", "reset", "step", "initial_state", "run")


@dataclass(frozen=True)
class SurrogateCode:
    """A surrogate as (kind, parameter, two precomputed constants), the way the kernels take it."""

    kind: int
    param: float
    c1: float
    c2: float


def lower_surrogate(surrogate: Surrogate) -> SurrogateCode | None:
    """Kernel code of ``surrogate``, or None for a surrogate the kernels do not know.

    Only the exact built-in classes qualify: a subclass may change ``grad``.
    """
    from spikeshield.neurons import surrogates as S

    kind = {
        S.Sigmoid: SG_SIGMOID,
        S.ATan: SG_ATAN,
        S.Rectangle: SG_RECTANGLE,
        S.Triangle: SG_TRIANGLE,
        S.Gaussian: SG_GAUSSIAN,
    }.get(type(surrogate))
    if kind is None or set(vars(surrogate)) - {"value"}:
        return None
    a = float(surrogate.value)
    if kind == SG_SIGMOID:
        return SurrogateCode(kind, a, 0.0, 0.0)
    if kind == SG_ATAN:  # (α/2) / (1 + (παx/2)²)
        return SurrogateCode(kind, a, 0.5 * math.pi * a, 0.5 * a)
    if kind == SG_RECTANGLE:  # 1/w where |x| < w/2
        return SurrogateCode(kind, a, 0.5 * a, 1.0 / a)
    if kind == SG_TRIANGLE:  # max(0, γ − |x|)/γ²
        return SurrogateCode(kind, a, 0.0, a * a)
    return SurrogateCode(kind, a, 0.0, a * math.sqrt(2.0 * math.pi))  # Gaussian


@dataclass
class NeuronProgram:
    """One neuron configuration in kernel terms (floats as the reference rounds them)."""

    charge: int = CHARGE_IF
    surrogate: SurrogateCode = field(default_factory=lambda: SurrogateCode(SG_SIGMOID, 4.0, 0.0, 0.0))
    klif: bool = False
    hard_reset: bool = True
    scale_reset: bool = False
    detach_reset: bool = False
    v_threshold: float = 1.0
    v_reset: float = 0.0
    v_init: float = 0.0
    beta: float = 0.5  # 1/τ
    decay: float = 1.0
    leak: float = 0.0
    floor: float = 0.0
    inv_tau: Tensor | None = None  # learnable 1/τ = sigmoid(w) (0-d), differentiable
    k: Tensor | None = None  # KLIF k (0-d)
    gain: Tensor | None = None  # DLIF p (T)
    osc_target: int = OSC_NONE
    fake_gradient: bool = False
    # noisy-if (stateless)
    noisy: bool = False
    noise_kind: str = ""  # "gaussian" | "uniform"
    noise_scale: float = 0.0  # raw·scale + offset
    noise_offset: float = 0.0
    noise_mean: float = 0.0  # E[ξ]: the expectation gradient's point is (X + E[ξ]) − V_th
    sample_noise: bool = False  # training or noise_in_eval
    expectation_gradient: bool = False

    def tensors(self) -> list[Tensor]:
        """The learnable (or learned) tensors the kernels read."""
        return [t for t in (self.inv_tau, self.k, self.gain) if t is not None]


def _base_fields(neuron: SpikingNeuron, surrogate: SurrogateCode) -> dict[str, Any]:
    return {
        "surrogate": surrogate,
        "hard_reset": neuron.reset_mode == "hard",
        "detach_reset": bool(neuron.detach_reset),
        "v_threshold": float(neuron.v_threshold),
        "v_reset": float(neuron.v_reset),
        "v_init": float(neuron.v_init),
    }


def _exponential_fields(neuron: Any) -> dict[str, Any]:
    """Charge of :class:`~spikeshield.neurons.lif.ExponentialLeak` (fixed or learnable 1/τ)."""
    charge = CHARGE_LIF if neuron.decay_input else CHARGE_LIF_NO_DECAY_INPUT
    if neuron.tau_logit is None:
        return {"charge": charge, "beta": 1.0 / neuron._tau_init}
    inv_tau = torch.sigmoid(neuron.tau_logit)
    return {"charge": charge, "beta": float(inv_tau.detach()), "inv_tau": inv_tau}


def lower(neuron: SpikingNeuron) -> NeuronProgram | None:
    """The fused program of ``neuron`` as configured now, or None if the kernels cannot run it."""
    from spikeshield.neurons.dlif import DLIFNode
    from spikeshield.neurons.if_neuron import IFNode
    from spikeshield.neurons.klif import KLIFNode
    from spikeshield.neurons.lif import LIFNode, PLIFNode
    from spikeshield.neurons.linear_lif import LinearLIFNode
    from spikeshield.neurons.noisy import NoisyIFNode
    from spikeshield.neurons.oscillating import OscillatingLIFNode

    cls = type(neuron)
    if any(name in vars(neuron) for name in _PART_NAMES):
        return None
    surrogate = lower_surrogate(neuron.surrogate)
    if surrogate is None:
        return None
    if cls is NoisyIFNode:
        n: Any = neuron
        gaussian = n.noise == "gaussian"
        return NeuronProgram(
            surrogate=surrogate,
            v_threshold=float(n.v_threshold),
            noisy=True,
            noise_kind=n.noise,
            noise_scale=float(n.noise_std) if gaussian else float(n.noise_high - n.noise_low),
            noise_offset=float(n.noise_mean) if gaussian else float(n.noise_low),
            noise_mean=float(n.noise_mean),
            sample_noise=bool(n.training or n.noise_in_eval),
            expectation_gradient=n.gradient == "expectation",
        )
    fields = _base_fields(neuron, surrogate)
    if cls is IFNode:
        return NeuronProgram(charge=CHARGE_IF, **fields)
    if cls is LIFNode and neuron.decay is not None:  # type: ignore[attr-defined]
        return NeuronProgram(charge=CHARGE_MULT, decay=float(neuron.decay), **fields)  # type: ignore[attr-defined]
    if cls in (LIFNode, PLIFNode):
        return NeuronProgram(**_exponential_fields(neuron), **fields)
    if cls is LinearLIFNode:
        lin: Any = neuron
        if lin.floor is None:
            return NeuronProgram(charge=CHARGE_LINEAR_NO_FLOOR, leak=float(lin.leak), **fields)
        return NeuronProgram(charge=CHARGE_LINEAR, leak=float(lin.leak), floor=float(lin.floor), **fields)
    if cls is KLIFNode:
        kl: Any = neuron
        return NeuronProgram(
            **_exponential_fields(kl), klif=True, scale_reset=bool(kl.scale_reset), k=kl.k, **fields
        )
    if cls is DLIFNode:
        dl: Any = neuron
        return NeuronProgram(charge=CHARGE_MULT, decay=float(dl.decay), gain=dl.gain, **fields)
    if cls is OscillatingLIFNode:
        osc: Any = neuron
        return NeuronProgram(
            **_exponential_fields(osc),
            osc_target=OSC_MEMBRANE if osc.target == "membrane" else OSC_THRESHOLD,
            fake_gradient=bool(osc.fake_gradient and osc.has_fake_gradient),
            **fields,
        )
    return None


@dataclass
class Oscillations:
    """The forward (and fake backward) oscillation of every step: T floats or a ``[T, ...]`` tensor."""

    forward: list[float] | Tensor
    backward: list[float] | Tensor | None


def oscillations(neuron: Any, x: Tensor, program: NeuronProgram) -> Oscillations | None:
    """Evaluate the oscillating neuron's oscillation for all T steps, with the reference's RNG call.

    Uses the neuron's own ``initial_state`` (which draws the random phase, once per call, as
    ``run`` does) and ``_oscillation``, so the values are the reference's to the bit.
    """
    if program.osc_target == OSC_NONE:
        return None
    steps = x.shape[0]
    state = neuron.initial_state(x[0]) if neuron.random_phase else {}

    def evaluate(backward: bool) -> list[float] | Tensor:
        values = [neuron._oscillation(t, state, backward=backward) for t in range(steps)]
        if any(isinstance(v, Tensor) for v in values):
            return torch.stack(
                [v if isinstance(v, Tensor) else torch.full_like(x[0], v) for v in values]
            ).contiguous()
        return [float(v) for v in values]

    forward = evaluate(False)
    backward = evaluate(True) if program.fake_gradient else None
    return Oscillations(forward, backward)


def sample_raw_noise(x: Tensor, program: NeuronProgram) -> Tensor | None:
    """The noisy neuron's raw noise, drawn step by step exactly as the reference draws it.

    The reference calls ``torch.randn_like(x[t])`` (or ``rand_like``) once per step; filling
    ``raw[t]`` in the same order with ``normal_()`` (``uniform_()``) consumes the generator
    identically (checked by the exactness tests). The kernel applies ``·scale + offset``.
    ``x`` is the neuron's input as given (its layout decides the reference's draw).
    """
    if not program.sample_noise:
        return None
    raw = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    gaussian = program.noise_kind == "gaussian"
    for t in range(x.shape[0]):
        if x[t].is_contiguous() and not streams.active():
            raw[t].normal_() if gaussian else raw[t].uniform_()
        else:  # the reference's draw follows x[t]'s memory layout (or each sample's stream)
            raw[t].copy_(streams.randn_like(x[t]) if gaussian else streams.rand_like(x[t]))
    return raw


def apply_neuron(function: Any, x: Tensor, program: NeuronProgram, osc: Oscillations | None) -> Tensor:
    """Spikes of a stateful neuron through a backend's autograd ``function`` (x: ``[T, ...]``).

    A repeated input (direct encoding) is handed over as its one step, read in place by the
    kernel; anything else as a contiguous ``[T, ...]`` tensor."""
    steps = x.shape[0]
    step = repeated_step(x) if osc is None else None
    params = (program.inv_tau, program.k, program.gain, program)
    if step is not None:
        return function.apply(step, *params, None, steps, True)
    return function.apply(x.contiguous(), *params, osc, steps, False)


def repeated_step(x: Tensor) -> Tensor | None:
    """``y`` if ``x`` is exactly ``y.unsqueeze(0).expand(T, *y.shape)`` of a contiguous ``y``, else None.

    Models with direct encoding hand their first neuron such a view (the stem runs once per
    image). Reading ``y`` in place saves a T-fold copy, and returning dL/dy (the sum over t)
    saves the T-fold gradient and the expand's reduction. When ``x`` requires grad, the
    autograd graph must show exactly Expand(Unsqueeze(y)), so the gradient reaches ``y`` as it
    would through the view.
    """
    if x.dim() < 3 or x.shape[0] < 2 or x.stride(0) != 0:
        return None
    base = x._base
    if (
        base is None
        or base.shape != x.shape[1:]
        or base.dtype != x.dtype
        or not base.is_contiguous()
        or base.stride() != x.stride()[1:]
        or base.storage_offset() != x.storage_offset()
    ):
        return None
    if not x.requires_grad:
        return base.detach()
    expand = x.grad_fn
    if expand is None or type(expand).__name__ != "ExpandBackward0":
        return None
    unsqueeze = expand.next_functions[0][0]
    if unsqueeze is None or type(unsqueeze).__name__ != "UnsqueezeBackward0":
        return None
    source = unsqueeze.next_functions[0][0]
    if base.grad_fn is not None:
        return base if source is base.grad_fn else None
    return base if source is not None and getattr(source, "variable", None) is base else None
