"""What the fused kernels execute: a flat description of one neuron configuration.

Every fused neuron is a configuration of one multi-step recurrence (see
``spikeshield.neurons.base``)::

    X'[t] = p[t]·X[t]                                   (DLIF gain; 1 otherwise)
    H[t]  = charge(V[t−1], X'[t]) + A·sin(2πf·t + φ)     (oscillation only for oscillating-lif)
    F[t]  = H[t]  or  ReLU(k·H[t])                       (KLIF)
    S[t]  = Θ(F[t] − V_th [− oscillation])               (surrogate g in the backward pass)
    V[t]  = F(1 − S) + V_reset·S  or  F − V_th·S         (÷ k with KLIF's scale_reset)

The kernels know no neuron class. A neuron opts in by describing itself: its
``kernel_program()`` returns a :class:`NeuronProgram` (its surrogate's ``kernel_code()`` a
:class:`SurrogateCode`), read at call time from its *current* configuration, or ``None`` to keep
the reference loop. :func:`describes_itself` is the guard both use: a subclass that redefines a
part below the class that wrote the description falls back to the reference automatically.

Random quantities: the oscillating neuron's random phase is not sampled by the kernels (the
neuron hands over its oscillation, ``kernel_oscillations``, drawn with exactly the reference's RNG
calls); the noisy neuron's noise is counter-based (:mod:`spikeshield.kernels.philox`): the kernels
compute it from the keys :func:`noise_keys` draws as the reference does, so fused and reference
spikes are identical for the same seed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from spikeshield.kernels import philox

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


@dataclass(frozen=True)
class SurrogateCode:
    """A surrogate as (kind, parameter, two precomputed constants), the way the kernels take it.

    ``kind`` is one of the ``SG_*`` constants; the kernels evaluate g(x) as
    sigmoid: α·σ(αx)(1 − σ(αx)) (param α); atan: c2 / (1 + (c1·x)²) (c1 = πα/2, c2 = α/2);
    rectangle: c2 where |x| < c1 (c1 = w/2, c2 = 1/w); triangle: max(0, γ − |x|)/c2 (c2 = γ²);
    gaussian: exp(−x²/2σ²)/c2 (param σ, c2 = σ√2π).
    """

    kind: int
    param: float
    c1: float
    c2: float


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


@functools.lru_cache(maxsize=256)
def _redefined_below(cls: type, method: str, parts: tuple[str, ...]) -> bool:
    mro = cls.__mro__
    owner = next((i for i, klass in enumerate(mro) if method in vars(klass)), len(mro))
    return any(
        next((i for i, klass in enumerate(mro) if name in vars(klass)), len(mro)) < owner for name in parts
    )


def describes_itself(obj: Any, method: str, parts: Iterable[str]) -> bool:
    """True when the description ``obj.method()`` still describes ``obj``.

    False if a subclass redefines one of ``parts`` below the class that defines ``method`` (a
    ``LIFNode`` subclass with its own ``charge`` inherits LIF's description, which no longer
    holds), or if one of ``parts`` was replaced on the instance.
    """
    names = tuple(parts)
    if any(name in vars(obj) for name in names):
        return False
    return not _redefined_below(type(obj), method, names)


@dataclass
class Oscillations:
    """The forward (and fake backward) oscillation of every step: T floats or a ``[T, ...]`` tensor."""

    forward: list[float] | Tensor
    backward: list[float] | Tensor | None


def noise_keys(x: Tensor, program: NeuronProgram) -> Tensor | None:
    """The noisy neuron's Philox keys for one call on ``x`` (``[T, B, ...]``), drawn exactly as the
    reference's ``initial_state`` draws them (``[1]``, or one per sample inside
    :func:`spikeshield.streams.sample_streams`); None when the call samples no noise."""
    return philox.draw_keys(x[0]) if program.sample_noise else None


def apply_neuron(
    function: Any, x: Tensor, program: NeuronProgram, osc: Oscillations | None, *extra: Any
) -> Tensor:
    """Spikes of a stateful neuron through a backend's autograd ``function`` (x: ``[T, ...]``).

    A repeated input (direct encoding) is handed over as its one step, read in place by the
    kernel; anything else as a contiguous ``[T, ...]`` tensor. ``extra`` arguments follow."""
    steps = x.shape[0]
    step = repeated_step(x) if osc is None else None
    params = (program.inv_tau, program.k, program.gain, program)
    if step is not None:
        return function.apply(step, *params, None, steps, True, *extra)
    return function.apply(x.contiguous(), *params, osc, steps, False, *extra)


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
