"""Registry of neurons: ``build_neuron("lif", tau=2.0)`` or ``neuron_factory(...)`` for models."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from spikeshield import validate
from spikeshield.errors import UsageError
from spikeshield.neurons.base import SpikingNeuron
from spikeshield.registry import Registry

NEURONS: Registry[type[SpikingNeuron]] = Registry("neuron")

N = TypeVar("N", bound=type[SpikingNeuron])

NeuronFactory = Callable[[], SpikingNeuron]


def register_neuron(name: str) -> Callable[[N], N]:
    """Class decorator: register a :class:`SpikingNeuron` subclass under ``name``."""

    def decorator(cls: N) -> N:
        cls.name = name
        return NEURONS.register(name)(cls)

    return decorator


def neuron_options(cls: type[SpikingNeuron]) -> dict[str, inspect.Parameter]:
    """Keyword options a neuron class accepts (its own and those it passes on to its base)."""
    options: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        forwards = False
        for pname, param in params.items():
            if pname == "self":
                continue
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                forwards = True
                continue
            options.setdefault(pname, param)
        if not forwards:
            break
    for fixed in cls.fixed_options:
        options.pop(fixed, None)
    return options


def build_neuron(name: str, **options: Any) -> SpikingNeuron:
    """Build a registered neuron, rejecting options that do not apply to it with a clear error."""
    cls = NEURONS.get(name)
    accepted = neuron_options(cls)
    validate.reject_unknown(f"neuron {cls.name!r}", options, accepted)
    required = sorted(
        k for k, p in accepted.items() if p.default is inspect.Parameter.empty and k not in options
    )
    if required:
        raise UsageError(f"neuron {cls.name!r} needs option(s) {', '.join(required)}")
    return cls(**options)


def neuron_factory(name: str, time_steps: int | None = None, **options: Any) -> NeuronFactory:
    """A zero-argument callable making fresh neurons, validated once up front.

    ``time_steps`` is passed on to neurons that need it (DLIF's per-step gain) and ignored by
    the others.
    """
    cls = NEURONS.get(name)
    if cls.needs_time_steps:
        if time_steps is None:
            raise UsageError(f"neuron {cls.name!r} needs time_steps")
        options = {"time_steps": time_steps, **options}
    build_neuron(name, **options)  # validate now, fail before any model is built

    def make() -> SpikingNeuron:
        return build_neuron(name, **options)

    return make
