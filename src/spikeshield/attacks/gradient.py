"""The attacker's gradient: which backward pass a white-box attack follows through the spikes.

Spikes are a step function: their true derivative is zero almost everywhere, so every
white-box number depends on the gradient the attacker substitutes. A robustness claim holds
only against the worst of several choices (methods.md, "The attacker's gradient"), so the
choice is explicit, composable and recorded with every result:

==========================  =======================================================================
mode                        backward pass
==========================  =======================================================================
``bptt``                    BPTT through each neuron's own surrogate (the default)
``surrogate:NAME[:VALUE]``  BPTT through another surrogate, e.g. ``surrogate:atan:2``; every
                            :class:`~spikeshield.neurons.SpikingNeuron`'s ``.surrogate`` is
                            swapped for the duration of the gradient call and always restored
``bptr``                    backpropagation through rates (below)
``true``                    for fake-gradient models (the oscillation defence): the gradient of
                            the true forward (:func:`spikeshield.neurons.true_gradient`)
``assg[:A]``                the adaptive-sharpness surrogate (Wang et al., arXiv 2512.22522), atan
                            shape; ``assg:NAME:A`` for another shape; without A, A is searched per
                            model (:mod:`spikeshield.attacks.assg`)
``A+B``                     both, e.g. ``true+surrogate:sigmoid:1``
``adaptive[:M1,M2,...]``    run the attack once per member and keep, per sample, the worst case
==========================  =======================================================================

None of the modes changes the forward pass: the model's outputs are bit-identical under each.

**BPTR (rate-based backward).** Each neuron maps input currents X[t] to spikes S[t]. BPTR treats
the neuron as a rate unit, ``r = f(Ī)`` with ``r = (1/T) Σ_t S[t]`` and ``Ī = (1/T) Σ_t X[t]``,
and assumes rate coding (every S[t] carries the rate), so ``∂L/∂r = Σ_t ∂L/∂S[t]`` and::

    ∂L/∂X[t] = (1/T) · f'(Ī) · Σ_t' ∂L/∂S[t'],      f'(Ī) = 1[r > 0] / V_th

f' is the slope of the rate of a soft-reset IF neuron under constant drive, ``r ≈ Ī / V_th``,
with the upper saturation ignored (as for a ReLU); a neuron that never fired on this input
passes no gradient. The forward spikes are computed without a graph, so BPTR is also cheaper
than BPTT. Learnable neuron parameters (PLIF τ, KLIF k, DLIF p[t]) receive no gradient under
BPTR — an attacker needs only the input gradient.

**Adaptive.** Recent work shows that a single fixed surrogate (or BPTR alone) overstates SNN
robustness. The default adaptive set is the own surrogate, BPTR, a wide and a sharp sigmoid and
a wide rectangle; for a model with fake-gradient neurons each member is also run with ``true+``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from spikeshield.attacks.assg import (
    SharpnessStatistics,
    adaptive_sharpness,
    assg_token,
    parse_assg,
    swapped_surrogates,
)
from spikeshield.errors import UsageError
from spikeshield.neurons import OscillatingLIFNode, SpikingNeuron, build_surrogate, true_gradient
from spikeshield.neurons.surrogates import Surrogate

#: members of the ``adaptive`` mode when none are given
DEFAULT_ADAPTIVE = ("bptt", "bptr", "surrogate:sigmoid:1", "surrogate:sigmoid:16", "surrogate:rectangle:2")


@dataclass(frozen=True)
class GradientSpec:
    """One attacker gradient: an optional surrogate swap, rate-based backward, true forward."""

    surrogate: str | None = None
    """Surrogate spec used for every neuron's backward (``None``: each neuron's own)."""
    rate: bool = False
    """Backpropagate through firing rates (BPTR) instead of through time."""
    true_forward: bool = False
    """Differentiate the true forward of fake-gradient neurons."""
    assg: str | None = None
    """Adaptive-sharpness surrogate: its canonical name (``assg``, ``assg:0.425``, ...)."""

    @property
    def name(self) -> str:
        parts = []
        if self.true_forward:
            parts.append("true")
        if self.rate:
            parts.append("bptr")
        elif self.surrogate is not None:
            parts.append(f"surrogate:{self.surrogate}")
        elif self.assg is not None:
            parts.append(self.assg)
        return "+".join(parts) or "bptt"

    @property
    def sharpness(self) -> tuple[str, float | None] | None:
        """ASSG's (surrogate shape, A); A is None while it is still to be searched."""
        return None if self.assg is None else parse_assg(self.assg)

    @property
    def needs_search(self) -> bool:
        return self.assg is not None and parse_assg(self.assg)[1] is None

    def through_true_forward(self) -> GradientSpec:
        """This mode differentiating the true forward of fake-gradient neurons (``true+``); BPTR
        is unchanged (it uses no surrogate, so no fake one either)."""
        return self if self.rate else replace(self, true_forward=True)

    def with_sharpness(self, A: float) -> GradientSpec:
        """This mode with ASSG's A fixed (unchanged if it uses no ASSG or A is already set)."""
        if not self.needs_search:
            return self
        shape, _ = parse_assg(self.assg or "assg")
        return GradientSpec(true_forward=self.true_forward, assg=assg_token(shape, A))


BPTT = GradientSpec()


@dataclass(frozen=True)
class AttackerGradient:
    """What ``--gradient`` asks for: one :class:`GradientSpec`, or several for ``adaptive``."""

    name: str
    members: tuple[GradientSpec, ...]

    @property
    def adaptive(self) -> bool:
        return len(self.members) > 1 or self.name.startswith("adaptive")

    def describe(self) -> dict[str, Any]:
        return {"gradient": self.name, "gradient_members": [m.name for m in self.members]}

    @property
    def needs_search(self) -> bool:
        """Whether a member uses ASSG with A still to be searched."""
        return any(m.needs_search for m in self.members)

    def with_sharpness(self, A: float) -> AttackerGradient:
        """The same gradient (same name) with every searched ASSG member's A set to ``A``."""
        return AttackerGradient(self.name, tuple(m.with_sharpness(A) for m in self.members))

    def through_true_forward(self) -> AttackerGradient:
        """The same gradient with every member differentiating the true forward (the attacker who
        knows the fake backward of the oscillation defence); itself if nothing changes."""
        members = tuple(dict.fromkeys(m.through_true_forward() for m in self.members))
        if members == self.members:
            return self
        name = members[0].name if len(members) == 1 and not self.adaptive else f"{self.name} (true forward)"
        return AttackerGradient(name, members)


def _surrogate_token(spec: str) -> str:
    """Validate a surrogate spec and return its canonical ``name:value`` form."""
    surrogate = build_surrogate(spec)
    return f"{surrogate.name}:{surrogate.value:g}"


def parse_gradient_spec(text: str) -> GradientSpec:
    """Parse one mode: ``bptt``, ``bptr``, ``true``, ``surrogate:NAME[:VALUE]`` or ``A+B``."""
    if not isinstance(text, str) or not text.strip():
        raise UsageError(f"gradient must be a non-empty name, got {text!r}")
    surrogate: str | None = None
    assg: str | None = None
    rate = true_forward = False
    for token in text.strip().lower().split("+"):
        token = token.strip()
        if token in ("bptt", "own"):
            continue
        if token == "bptr":
            rate = True
        elif token == "true":
            true_forward = True
        elif token.startswith("surrogate:") or token == "assg" or token.startswith("assg:"):
            if surrogate is not None or assg is not None:
                raise UsageError(f"gradient {text!r} names two surrogates")
            if token.startswith("surrogate:"):
                surrogate = _surrogate_token(token.partition(":")[2])
            else:
                assg = assg_token(*parse_assg(token))
        else:
            raise UsageError(
                f"unknown gradient {token!r} in {text!r}; use bptt, bptr, true, surrogate:NAME[:VALUE], "
                "assg[:A], combinations joined by '+', or adaptive[:M1,M2,...]"
            )
    if rate and (surrogate is not None or assg is not None or true_forward):
        raise UsageError(f"gradient {text!r}: bptr uses no surrogate, so it takes no surrogate, assg or true")
    return GradientSpec(surrogate=surrogate, rate=rate, true_forward=true_forward, assg=assg)


def has_fake_gradient(model: nn.Module) -> bool:
    """True if any neuron of ``model`` backpropagates something other than its forward."""
    return any(isinstance(m, OscillatingLIFNode) and m.has_fake_gradient for m in model.modules())


def resolve_gradient(text: str | AttackerGradient | None, model: nn.Module | None = None) -> AttackerGradient:
    """Turn a ``--gradient`` value into its members (expanding ``adaptive`` for ``model``)."""
    if isinstance(text, AttackerGradient):
        return text
    if text is None:
        text = "bptt"
    if not isinstance(text, str):
        raise UsageError(f"gradient must be a name, got {type(text).__name__}")
    name = text.strip().lower()
    if name == "adaptive" or name.startswith("adaptive:"):
        listed = [t for t in name.partition(":")[2].split(",") if t.strip()]
        members = [parse_gradient_spec(t) for t in (listed or DEFAULT_ADAPTIVE)]
        if not listed and model is not None and has_fake_gradient(model):
            members += [m.through_true_forward() for m in members if not m.rate and not m.true_forward]
        unique = tuple(dict.fromkeys(members))
        label = "adaptive" if not listed else "adaptive:" + ",".join(m.name for m in unique)
        return AttackerGradient(label, unique)
    spec = parse_gradient_spec(name)
    return AttackerGradient(spec.name, (spec,))


def spiking_neurons(model: nn.Module) -> list[SpikingNeuron]:
    return [m for m in model.modules() if isinstance(m, SpikingNeuron)]


@contextlib.contextmanager
def swap_surrogate(model: nn.Module, surrogate: str | Surrogate) -> Iterator[int]:
    """Within this block every spiking neuron of ``model`` uses ``surrogate`` in its backward.

    The forward (Heaviside) is unchanged. The original surrogates are always restored, also when
    the block raises. Yields the number of neurons changed.
    """
    new = build_surrogate(surrogate)
    with swapped_surrogates(model, lambda _i, _n: new) as count:
        yield count


def _rate_forward(neuron: SpikingNeuron, original: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    def forward(x: Tensor) -> Tensor:
        with torch.no_grad():
            spikes = original(x)
        if not x.requires_grad:
            return spikes
        gain = (spikes.mean(0) > 0).to(x.dtype) / neuron.v_threshold
        proxy = x.mean(0) * gain  # ∂proxy/∂X[t] = f'(Ī)/T
        # value: the spikes exactly (proxy − proxy = 0); gradient: BPTR's, broadcast over t
        return spikes + (proxy - proxy.detach()).unsqueeze(0)

    return forward


@contextlib.contextmanager
def rate_gradient(model: nn.Module) -> Iterator[int]:
    """Within this block every spiking neuron backpropagates through its firing rate (BPTR).

    Each neuron's ``forward`` is replaced on the instance (and always restored); the spikes it
    returns are those of the original forward, bit for bit.
    """
    neurons = spiking_neurons(model)
    saved: list[tuple[SpikingNeuron, Any]] = []
    try:
        for n in neurons:
            previous = n.__dict__.get("forward")
            n.forward = _rate_forward(n, n.forward)  # type: ignore[method-assign]
            saved.append((n, previous))
        yield len(neurons)
    finally:
        for n, previous in reversed(saved):
            if previous is None:
                del n.forward
            else:
                n.forward = previous  # type: ignore[method-assign]


@contextlib.contextmanager
def attacker_gradient(
    model: nn.Module, spec: GradientSpec, statistics: SharpnessStatistics | None = None
) -> Iterator[None]:
    """Apply one :class:`GradientSpec` to ``model`` for the duration of the block.

    ASSG needs the attack run's ``statistics`` (the :class:`~spikeshield.attacks.oracle.Oracle`
    keeps them) and a fixed A.
    """
    with contextlib.ExitStack() as stack:
        if spec.true_forward:
            stack.enter_context(true_gradient(model))
        if spec.surrogate is not None:
            stack.enter_context(swap_surrogate(model, spec.surrogate))
        if spec.sharpness is not None:
            shape, A = spec.sharpness
            if A is None:
                raise UsageError(
                    f"gradient {spec.name!r} searches A per model: give A (assg:A) for a single attack, "
                    "or let evaluate_robustness / an evaluation suite search it"
                )
            if statistics is None:
                raise RuntimeError("ASSG needs the attack run's SharpnessStatistics")
            stack.enter_context(adaptive_sharpness(model, shape, A, statistics))
        if spec.rate:
            stack.enter_context(rate_gradient(model))
        yield


def gradient_names(members: Sequence[GradientSpec]) -> list[str]:
    return [m.name for m in members]
