"""Adaptive-sharpness surrogate gradient (ASSG), on the attacker's side.

Wang, Zhao, Chen, Zhang & Zeng, "Towards Reliable Evaluation of Adversarial Robustness for
Spiking Neural Networks", arXiv 2512.22522 (2025); official code:
github.com/craree/Towards-Reliable-Evaluation-of-Adversarial-Robustness-for-Spiking-Neural-Networks
(``my_node.py``: ``ASSGrad*``; ``evaluate.py``: the search over A). Written from the paper and
that code; the conventions below are the code's.

A fixed surrogate is either too wide (its gradient points away from what the spikes do) or too
sharp (it vanishes for most neurons). ASSG sets the sharpness of every neuron's surrogate from
how far its membrane potential sits from the threshold. Per spiking layer l, time step t and
element i (a neuron of one sample), on ``x = u − V_th`` (the argument of the surrogate; for a
fake-gradient neuron, the point its gradient is taken at), two running statistics are updated
once per attack iteration (one gradient query), detached from the graph::

    M ← β₁·M + (1 − β₁)·|x|                    start M = 1
    D ← β₂·D + (1 − β₂)·| |x| − M |             start D = 0   (with the M just updated)
    α = a / (M + r·D + 1e-4)                    β₁ = β₂ = 0.9, r = 1.5

M and D restart for every attack run (every restart). Under EOT only the first of the passes
averaged per query updates them; the others use them. α is the sharpness in the paper's
parameterisation of each surrogate, mapped onto ours:

==========  ============================================  ==========================
surrogate   paper's g(x) with sharpness α                  our parameter
==========  ============================================  ==========================
atan        (α/2) / (1 + (παx/2)²)                         alpha = α
sigmoid     α·σ(αx)·(1 − σ(αx))                            alpha = α
rectangle   α/2 for |x| < 1/α                              width = 2/α
triangle    α − α²|x| for |x| < 1/α                        gamma = 1/α
gaussian    α·exp(−(αx)²/2) / √(2π)                        sigma = 1/α
==========  ============================================  ==========================

**A and a.** For atan, ``a = (2/π)·tan(π·A)`` with 0 < A < ½: with α = a/M the surrogate puts
a share 2A of its mass inside ±M (the mass of atan inside ±z is (2/π)·arctan(παz/2)). The other
surrogates use ``a = A``. A is chosen per model by a ternary search over [0.35, 0.49] in 8
rounds (:func:`search_sharpness`), keeping the A of lowest robust accuracy. (The issue text and
methods notes write a = (2/π)·tan(πA/2), A the share inside ±M; with A in [0.35, 0.49] that is a
surrogate about five times wider than the official code's, whose A is half that share. We follow
the code: ``assg:0.425`` is the paper's default 0.425.)

Use it as ``--gradient assg`` (atan, A searched), ``assg:A``, ``assg:NAME:A``, alone, with
``true+``, or as a member of ``adaptive:...``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from spikeshield import validate
from spikeshield.errors import UsageError
from spikeshield.neurons import SURROGATES, SpikingNeuron, Surrogate

#: the sharpness α of the paper's parameterisation → our surrogate's parameter
PARAMETER_FROM_SHARPNESS: dict[str, Callable[[Tensor], Tensor]] = {
    "atan": lambda alpha: alpha,
    "sigmoid": lambda alpha: alpha,
    "rectangle": lambda alpha: 2.0 / alpha,
    "triangle": lambda alpha: 1.0 / alpha,
    "gaussian": lambda alpha: 1.0 / alpha,
}
DEFAULT_SHAPE = "atan"
#: the paper's search range of A (atan) and its number of rounds
SEARCH_RANGE = (0.35, 0.49)
SEARCH_ROUNDS = 8


def sharpness_scale(shape: str, A: float) -> float:
    """``a`` of α = a / (M + r·D + 1e-4): (2/π)·tan(πA) for atan (0 < A < ½), else A."""
    if shape == "atan":
        validate.in_range("assg A (atan)", A, 0.0, 0.5, low_open=True, high_open=True)
        return 2.0 / math.pi * math.tan(math.pi * A)
    return validate.positive(f"assg A ({shape})", A)


def parse_assg(text: str) -> tuple[str, float | None]:
    """``assg``, ``assg:A``, ``assg:NAME`` or ``assg:NAME:A`` → (surrogate shape, A or None).

    A is required for shapes other than atan: the search range is the paper's for atan.
    """
    parts = [p.strip() for p in text.strip().lower().split(":")]
    if parts[0] != "assg" or len(parts) > 3:
        raise UsageError(f"{text!r} is not assg[:A] or assg:NAME[:A]")
    shape, A = DEFAULT_SHAPE, None
    rest = parts[1:]
    if rest and rest[0] in PARAMETER_FROM_SHARPNESS:
        shape = rest.pop(0)
    elif rest and rest[0] in SURROGATES.names():
        raise UsageError(f"assg has no rule for the {rest[0]!r} surrogate")
    if rest:
        try:
            A = float(rest[0])
        except ValueError:
            raise UsageError(f"{text!r}: A must be a number, got {rest[0]!r}") from None
        sharpness_scale(shape, A)
    if len(rest) > 1:
        raise UsageError(f"{text!r} is not assg[:A] or assg:NAME[:A]")
    if A is None and shape != DEFAULT_SHAPE:
        raise UsageError(
            f"assg:{shape} needs A (assg:{shape}:A): the search range {SEARCH_RANGE} is the paper's for atan"
        )
    return shape, A


def assg_token(shape: str, A: float | None) -> str:
    """The canonical name: ``assg``, ``assg:0.425``, ``assg:sigmoid:0.8``."""
    parts = ["assg"] + ([shape] if shape != DEFAULT_SHAPE else []) + ([f"{A:.6g}"] if A is not None else [])
    return ":".join(parts)


class SharpnessStatistics:
    """M and D of every spiking layer, time step and element, for one attack run.

    A layer's calls to its surrogate within one forward pass are its time steps, in order
    (:meth:`begin_pass` restarts the count); the surrogate's argument is one time step
    ``[B, ...]``. The tensors hold one row per sample of the run (the samples of its first
    query); a later query may ask about a subset of them (``rows``: the samples an attack still
    works on), whose rows alone are read and updated. :meth:`reset` starts a new run.
    """

    def __init__(self, beta1: float = 0.9, beta2: float = 0.9, relax: float = 1.5) -> None:
        self.beta1, self.beta2, self.relax = beta1, beta2, relax
        self.moments: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
        self.calls: dict[int, int] = {}
        self.update = True
        self.rows: Tensor | None = None

    def reset(self) -> None:
        """A new attack run: M = 1, D = 0 everywhere."""
        self.moments.clear()
        self.calls.clear()

    def begin_pass(self, update: bool, rows: Tensor | None = None) -> None:
        """A new forward pass over the run's samples ``rows`` (None: all of them, in order);
        ``update=False`` for the second and later EOT passes of a query."""
        self.calls.clear()
        self.update = update
        self.rows = rows

    def sharpness(self, layer: int, x: Tensor, a: float) -> Tensor:
        """α for the next time step of ``layer`` at ``x`` (updating M and D first if asked)."""
        t = self.calls.get(layer, 0)
        self.calls[layer] = t + 1
        size = x.detach().abs()
        key = (layer, t)
        if key not in self.moments:
            if self.rows is not None:
                raise RuntimeError("ASSG: the first query of an attack run must ask about all its samples")
            self.moments[key] = (torch.ones_like(size), torch.zeros_like(size))
        m_all, d_all = self.moments[key]
        rows = self.rows
        m, d = (m_all, d_all) if rows is None else (m_all.index_select(0, rows), d_all.index_select(0, rows))
        if m.shape != size.shape:
            raise RuntimeError(
                f"ASSG keeps statistics per sample for one attack run: layer {layer} step {t} holds "
                f"{list(m.shape)}, the query has {list(size.shape)} (a run must query its own samples; "
                "Oracle.new_run() starts a new run)"
            )
        if self.update:
            m = self.beta1 * m + (1 - self.beta1) * size
            d = self.beta2 * d + (1 - self.beta2) * (size - m).abs()
            if rows is None:
                self.moments[key] = (m, d)
            else:
                self.moments[key] = (m_all.index_copy(0, rows, m), d_all.index_copy(0, rows, d))
        return a / (m + self.relax * d + 1e-4)


class AdaptiveSurrogate(Surrogate):
    """The surrogate of one layer under ASSG: the base shape with α from the statistics.

    Forward: the Heaviside step, unchanged. Never lowered to the fused kernels (not a
    built-in class), so the layer runs the reference loop, which calls it once per time step.
    """

    name = "assg"
    param_name = "A"

    def __init__(self, shape: str, A: float, statistics: SharpnessStatistics, layer: int) -> None:
        self.base = SURROGATES.get(shape)
        self.value = A
        self.a = sharpness_scale(shape, A)
        self.statistics = statistics
        self.layer = layer

    def __call__(self, x: Tensor, x_backward: Tensor | None = None) -> Tensor:
        point = x if x_backward is None else x_backward
        alpha = self.statistics.sharpness(self.layer, point, self.a)
        return self.base.per_element(PARAMETER_FROM_SHARPNESS[self.base.name](alpha))(x, x_backward)

    def spec(self) -> dict[str, Any]:
        return {"name": assg_token(self.base.name, self.value)}


@contextlib.contextmanager
def swapped_surrogates(model: nn.Module, make: Callable[[int, SpikingNeuron], Surrogate]) -> Iterator[int]:
    """Within this block spiking neuron i of ``model`` uses ``make(i, neuron)`` as its surrogate
    (always restored, also when the block raises). Yields the number of neurons changed."""
    neurons = [m for m in model.modules() if isinstance(m, SpikingNeuron)]
    saved = [n.surrogate for n in neurons]
    try:
        for i, n in enumerate(neurons):
            n.surrogate = make(i, n)
        yield len(neurons)
    finally:
        for n, s in zip(neurons, saved):
            n.surrogate = s


@contextlib.contextmanager
def adaptive_sharpness(
    model: nn.Module, shape: str, A: float, statistics: SharpnessStatistics
) -> Iterator[int]:
    """Within this block every spiking neuron of ``model`` backpropagates through ASSG."""
    sharpness_scale(shape, A)
    with swapped_surrogates(model, lambda i, _n: AdaptiveSurrogate(shape, A, statistics, i)) as count:
        yield count


# ---------------------------------------------------------------------------- the search over A
@dataclass(frozen=True)
class SharpnessSearch:
    """How A is searched: the range, the rounds, and on how many samples.

    ``samples``: the search runs the attack once per A tried on the first ``samples`` samples
    it concerns (``None``: all); the chosen A then attacks the others once.
    """

    low: float = SEARCH_RANGE[0]
    high: float = SEARCH_RANGE[1]
    rounds: int = SEARCH_ROUNDS
    samples: int | None = 100

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high < 0.5:
            raise UsageError(
                f"assg search range must satisfy 0 < low < high < 0.5, got [{self.low}, {self.high}]"
            )
        validate.int_at_least("assg search rounds", self.rounds, 0)
        if self.samples is not None:
            validate.int_at_least("assg search samples", self.samples, 1)

    @property
    def midpoint(self) -> float:
        """The A used where nothing is searched (ε = 0, the large-ε probe)."""
        return round((self.low + self.high) / 2, 6)


@dataclass
class SearchResult:
    """What :func:`search_sharpness` tried: robust samples left by each A, in the order tried."""

    tried: dict[float, int] = field(default_factory=dict)
    best: float = 0.0
    rounds: int = 0
    stopped_early: bool = False

    def record(self, search: SharpnessSearch, samples: int) -> dict[str, Any]:
        return {
            "range": [search.low, search.high],
            "rounds_planned": search.rounds,
            "rounds_run": self.rounds,
            "stopped_early": self.stopped_early,
            "search_samples": samples,
            "robust_by_A": {f"{a:.6g}": n for a, n in self.tried.items()},
            "chosen_A": self.best,
        }


_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def search_sharpness(
    robust: Callable[[float], int], search: SharpnessSearch, settled: Callable[[], bool] = lambda: False
) -> SearchResult:
    """The A in [low, high] leaving the fewest robust samples, by ternary search.

    The two interior points of each round sit at the golden ratio, so each round reuses one
    point of the round before: ``rounds`` rounds run ``rounds + 1`` attacks (the paper's thirds
    run ``2·rounds``) and shrink the interval by 0.618 per round instead of 2/3. Ties move the
    lower end up, as in the official code. The search stops early once an A leaves no robust
    sample (nothing can do better) or once ``settled()`` says further runs cannot change the
    caller's result. Returns every A tried with its count; the best is the first A with the
    lowest count.
    """
    result = SearchResult()

    def f(a: float) -> int:
        a = round(a, 6)
        if a not in result.tried:
            result.tried[a] = robust(a)
        return result.tried[a]

    lo, hi = search.low, search.high
    if search.rounds == 0:
        f(search.midpoint)
    else:
        a1, a2 = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
        f1 = f(a1)
        f2 = f(a2) if f1 > 0 and not settled() else f1
        for r in range(1, search.rounds + 1):  # round r: compare, shrink, try the new point
            result.rounds = r
            if min(result.tried.values()) == 0 or settled() or r == search.rounds:
                break
            if f1 < f2:
                hi, a2, f2 = a2, a1, f1
                a1 = hi - _GOLDEN * (hi - lo)
                f1 = f(a1)
            else:
                lo, a1, f1 = a1, a2, f2
                a2 = lo + _GOLDEN * (hi - lo)
                f2 = f(a2)
    result.stopped_early = len(result.tried) < search.rounds + 1
    best = min(result.tried.values())
    result.best = next(a for a, n in result.tried.items() if n == best)
    return result
