"""Surrogate gradients for the spike function.

Forward, every surrogate is the Heaviside step ``S = Θ(x)`` with ``Θ(0) = 1``. Backward, the
derivative of the step (zero almost everywhere) is replaced by ``g(x)``, the derivative of a
smooth *primitive* ``σ(x)`` that approximates the step. Each surrogate exposes both, so tests can
check ``g`` against finite differences of ``σ``.

==========  =========================================  ===================================
name        primitive σ(x)                              surrogate g(x) = σ'(x)
==========  =========================================  ===================================
sigmoid     1 / (1 + exp(−αx))                          α·σ(x)·(1 − σ(x))
atan        1/2 + arctan(παx/2)/π                       (α/2) / (1 + (παx/2)²)
rectangle   clamp(x/w + 1/2, 0, 1)                      1/w  if |x| < w/2 else 0
triangle    piecewise quadratic                         max(0, γ − |x|) / γ²
gaussian    Φ(x/σ)  (normal CDF)                        exp(−x²/2σ²) / (σ√(2π))
==========  =========================================  ===================================

``sigmoid`` and ``atan`` follow SpikingJelly's parameterisation (Fang et al. 2021); ``triangle``
is the surrogate of Ding et al. (ICML 2024); ``gaussian`` is the exact gradient of the expected
spike of a neuron with Gaussian membrane noise (Jiang & Zhang, noise-based training).

A surrogate can also be evaluated at a point other than the forward one (``x_backward``): the
oscillation defence (Jiang & Zhang) fires on the true membrane potential but hands the attacker
the gradient of a "fake" neuron.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor

from spikeshield import validate
from spikeshield.errors import UsageError
from spikeshield.kernels import program as K
from spikeshield.registry import Registry

SURROGATES: Registry[type[Surrogate]] = Registry("surrogate")

_SMOOTH = contextvars.ContextVar("spikeshield_smooth_spikes", default=False)


def smoothing() -> bool:
    """True inside :func:`smooth_spikes` (spikes are then σ(x), which no fused kernel computes)."""
    return _SMOOTH.get()


@contextlib.contextmanager
def smooth_spikes() -> Iterator[None]:
    """Within this block spikes are the smooth primitive σ(x) instead of Θ(x).

    Used by tests to ``gradcheck`` whole neurons: with a smooth forward, the analytic gradient
    (which uses g = σ') must match finite differences exactly.
    """
    token = _SMOOTH.set(True)
    try:
        yield
    finally:
        _SMOOTH.reset(token)


class _SurrogateSpike(torch.autograd.Function):
    """Θ(x) forward; ``grad · g(x_backward)`` backward (x_backward defaults to x)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, x_backward: Tensor | None, surrogate: Surrogate) -> Tensor:
        # None, not x twice, for "same point": Dynamo cannot trace an apply given one tensor twice
        ctx.save_for_backward(x if x_backward is None else x_backward)
        ctx.surrogate = surrogate
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, None, None]:
        (x_backward,) = ctx.saved_tensors
        return grad_output * ctx.surrogate.grad(x_backward), None, None


class Surrogate:
    """Base class: a Heaviside forward with a smooth surrogate backward.

    Subclasses define :meth:`grad` (g) and :meth:`primitive` (σ with σ' = g) and declare their
    single shape parameter in ``param_name`` with its default.
    """

    name: ClassVar[str] = ""
    param_name: ClassVar[str] = ""
    default: ClassVar[float] = 1.0

    def __init__(self, value: float | None = None) -> None:
        value = self.default if value is None else float(value)
        validate.positive(f"surrogate {self.name} {self.param_name}", value)
        self.value = value

    def grad(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def primitive(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def kernel_code(self) -> K.SurrogateCode | None:
        """Opt-in to the fused kernels: how they evaluate :meth:`grad` (default None: they cannot).

        Override in a surrogate whose g the kernels implement (``SG_*`` in
        ``spikeshield.kernels.program``). Callers use :meth:`fused_code`.
        """
        return None

    def fused_code(self) -> K.SurrogateCode | None:
        """:meth:`kernel_code`, or None where a subclass (or the instance) redefines ``grad`` or
        ``__call__`` below the class that wrote it; neurons then use the reference loop."""
        if not K.describes_itself(self, "kernel_code", ("grad", "__call__")):
            return None
        return self.kernel_code()

    def __call__(self, x: Tensor, x_backward: Tensor | None = None) -> Tensor:
        """Spikes Θ(x); the gradient w.r.t. ``x`` is g evaluated at ``x_backward`` (default x).

        (``smooth_spikes()`` is not seen inside ``torch.compile``d code: Dynamo cannot trace a
        ContextVar, and a graph break per step would defeat compiling the loop.)
        """
        if not torch.compiler.is_compiling() and _SMOOTH.get():
            if x_backward is None:
                return self.primitive(x)
            # Value of the forward point, derivative of the backward point.
            smooth_b = self.primitive(x_backward)
            return smooth_b + (self.primitive(x) - smooth_b).detach()
        return _SurrogateSpike.apply(x, x_backward, self)

    @classmethod
    def per_element(cls, value: Tensor) -> Surrogate:
        """The same shape with a per-element parameter ``value`` (broadcast against x).

        For the attacker's adaptive sharpness (ASSG, :mod:`spikeshield.attacks.assg`), whose
        sharpness differs per neuron, time step and sample. Such a surrogate is used inside one
        call of a neuron and never assigned to a neuron (the kernels need a scalar parameter).
        """
        surrogate = cls.__new__(cls)
        surrogate.value = value  # type: ignore[assignment]  # every ``grad`` broadcasts it
        return surrogate

    def spec(self) -> dict[str, float | str]:
        """A JSON-able description, recorded with every result that depends on it."""
        return {"name": self.name, self.param_name: self.value}

    def __repr__(self) -> str:
        return f"{self.name}({self.param_name}={self.value:g})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Surrogate) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash((self.name, self.value))


@SURROGATES.register("sigmoid", help="σ(αx) primitive; g = α·σ·(1−σ). Default α = 4.")
class Sigmoid(Surrogate):
    name = "sigmoid"
    param_name = "alpha"
    default = 4.0

    def primitive(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.value * x)

    def grad(self, x: Tensor) -> Tensor:
        s = torch.sigmoid(self.value * x)
        return self.value * s * (1.0 - s)

    def kernel_code(self) -> K.SurrogateCode:
        return K.SurrogateCode(K.SG_SIGMOID, self.value, 0.0, 0.0)


@SURROGATES.register("atan", help="arctan primitive; g = (α/2)/(1+(παx/2)²). Default α = 2.")
class ATan(Surrogate):
    name = "atan"
    param_name = "alpha"
    default = 2.0

    def primitive(self, x: Tensor) -> Tensor:
        return 0.5 + torch.atan(0.5 * math.pi * self.value * x) / math.pi

    def grad(self, x: Tensor) -> Tensor:
        return (0.5 * self.value) / (1.0 + (0.5 * math.pi * self.value * x) ** 2)

    def kernel_code(self) -> K.SurrogateCode:
        a = self.value
        return K.SurrogateCode(K.SG_ATAN, a, 0.5 * math.pi * a, 0.5 * a)


@SURROGATES.register("rectangle", help="box of width w and height 1/w. Default w = 1.")
class Rectangle(Surrogate):
    name = "rectangle"
    param_name = "width"
    default = 1.0

    def primitive(self, x: Tensor) -> Tensor:
        return torch.clamp(x / self.value + 0.5, 0.0, 1.0)

    def grad(self, x: Tensor) -> Tensor:
        return (x.abs() < 0.5 * self.value).to(x.dtype) / self.value

    def kernel_code(self) -> K.SurrogateCode:
        w = self.value
        return K.SurrogateCode(K.SG_RECTANGLE, w, 0.5 * w, 1.0 / w)


@SURROGATES.register("triangle", help="g = max(0, γ−|x|)/γ² (Ding et al. 2024). Default γ = 1.")
class Triangle(Surrogate):
    name = "triangle"
    param_name = "gamma"
    default = 1.0

    def primitive(self, x: Tensor) -> Tensor:
        g = self.value
        inner = (g - x.abs()).clamp(min=0.0) ** 2 / (2 * g * g)
        return torch.where(x < 0, inner, 1.0 - inner)

    def grad(self, x: Tensor) -> Tensor:
        g = self.value
        return (g - x.abs()).clamp(min=0.0) / (g * g)

    def kernel_code(self) -> K.SurrogateCode:
        g = self.value
        return K.SurrogateCode(K.SG_TRIANGLE, g, 0.0, g * g)


@SURROGATES.register("gaussian", help="normal-CDF primitive of std σ; exact for Gaussian noise.")
class Gaussian(Surrogate):
    name = "gaussian"
    param_name = "sigma"
    default = 0.5

    def primitive(self, x: Tensor) -> Tensor:
        return 0.5 * (1.0 + torch.erf(x / (self.value * math.sqrt(2.0))))

    def grad(self, x: Tensor) -> Tensor:
        s = self.value
        return torch.exp(-0.5 * (x / s) ** 2) / (s * math.sqrt(2.0 * math.pi))

    def kernel_code(self) -> K.SurrogateCode:
        s = self.value
        return K.SurrogateCode(K.SG_GAUSSIAN, s, 0.0, s * math.sqrt(2.0 * math.pi))


SurrogateSpec = Surrogate | str | dict[str, Any] | None


def build_surrogate(spec: SurrogateSpec, default: str = "sigmoid") -> Surrogate:
    """Make a surrogate from a spec.

    Accepted: a :class:`Surrogate`; ``None`` (the default); a name (``"atan"``); a name with its
    parameter (``"atan:3"``, ``"sigmoid:alpha=5"``); or a dict (``{"name": "triangle",
    "gamma": 0.5}``).
    """
    if isinstance(spec, Surrogate):
        return spec
    if spec is None:
        spec = default
    if isinstance(spec, dict):
        spec = dict(spec)
        name = spec.pop("name", None)
        if name is None:
            raise UsageError(f"surrogate spec {spec!r} has no 'name'")
        cls = SURROGATES.get(str(name))
        extra = set(spec) - {cls.param_name}
        if extra:
            raise UsageError(f"surrogate {cls.name!r} takes only {cls.param_name!r}, got {sorted(extra)}")
        return cls(spec.get(cls.param_name))
    if not isinstance(spec, str):
        raise UsageError(f"surrogate must be a name or Surrogate, got {type(spec).__name__}")
    name, _, arg = spec.partition(":")
    cls = SURROGATES.get(name)
    if not arg:
        return cls()
    key, eq, value = arg.partition("=")
    if eq and key.strip() != cls.param_name:
        raise UsageError(f"surrogate {cls.name!r} takes {cls.param_name!r}, not {key.strip()!r}")
    raw = value if eq else key
    try:
        number = float(raw)
    except ValueError:
        raise UsageError(f"surrogate {cls.name!r}: {raw!r} is not a number") from None
    return cls(number)
