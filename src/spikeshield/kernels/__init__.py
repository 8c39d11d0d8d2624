"""Fused multi-step neuron kernels, selected automatically by :meth:`SpikingNeuron.forward`.

A neuron's forward over T normally runs the reference loop (:meth:`SpikingNeuron.run`): a few
element-wise PyTorch ops per step, each saving tensors for autograd. The fused kernels run the
whole recurrence in one pass, save only their input for the backward, and backpropagate through
time with a hand-derived recursion (equations in ``kernels/program.py`` and ``csrc/neurons.c``):

* CPU, float32: a C library built on first use (:mod:`spikeshield.kernels.cpu`).
* CUDA, float32/bfloat16/float16: Triton kernels (:mod:`spikeshield.kernels.triton_backend`).

The kernels know no neuron class: a neuron opts in by describing itself (its
``kernel_program()``, see :class:`FusableNeuron`); one that does not runs the reference loop.
Every registered neuron and surrogate describes itself, with learnable KLIF k, DLIF p[t] and
PLIF τ, hard/soft/detached reset; spikes are bit-identical to the reference in float32 and
gradients agree to float rounding (tests/kernels). Anything else — another dtype or device, a
surrogate or neuron subclass that redefines a part, ``smooth_spikes()``, ``run(record=True)`` or
an explicit initial state, ``torch.compile`` tracing, ``torch.func`` transforms — uses the
reference loop.

Force the reference (for comparisons, debugging, or to rule the kernels out)::

    with spikeshield.kernels.reference_only():
        out = model(x)

or set ``SPIKESHIELD_KERNELS=reference`` in the environment. Neither touches a model's spec or
checkpoint.

Which one ran is recorded per neuron (:func:`backends_used`; ``metrics.json`` and
``robustness.json`` carry it under ``environment.kernels``), since the fused kernels are 2–4×
faster and a timing means little without it.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import weakref
from collections.abc import Iterator
from typing import Any, Protocol

import torch
from torch import Tensor

from spikeshield.errors import UsageError
from spikeshield.kernels.program import OSC_NONE, NeuronProgram, Oscillations, noise_keys

ENV = "SPIKESHIELD_KERNELS"
BACKENDS = ("cpu", "triton")
#: what :func:`backends_used` calls the code that ran a neuron's forward
RAN = {"cpu": "fused-c", "triton": "triton", None: "reference"}

_REFERENCE = contextvars.ContextVar("spikeshield_kernels_reference", default=False)
_BACKEND = contextvars.ContextVar[str | None]("spikeshield_kernels_backend", default=None)


@contextlib.contextmanager
def reference_only() -> Iterator[None]:
    """Within this block every neuron runs the reference PyTorch loop."""
    token = _REFERENCE.set(True)
    try:
        yield
    finally:
        _REFERENCE.reset(token)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Within this block fused neurons use backend ``name`` whatever the device.

    For tests: ``use_backend("triton")`` runs the Triton kernels on CPU tensors under
    ``TRITON_INTERPRET=1``.
    """
    if name not in BACKENDS:
        raise UsageError(f"kernel backend must be one of {BACKENDS}, got {name!r}")
    token = _BACKEND.set(name)
    try:
        yield
    finally:
        _BACKEND.reset(token)


def enabled() -> bool:
    """False inside :func:`reference_only` or with ``SPIKESHIELD_KERNELS=reference``."""
    if _REFERENCE.get():
        return False
    mode = os.environ.get(ENV, "auto").strip().lower()
    return mode not in ("reference", "off", "0", "none")


def backend_for(x: Tensor) -> str | None:
    """The backend that would run a float tensor like ``x`` (None: the reference loop)."""
    forced = _BACKEND.get()
    if forced is not None:
        return forced
    if x.device.type == "cpu" and x.dtype == torch.float32:
        return "cpu"
    if x.device.type == "cuda" and x.dtype in (torch.float32, torch.bfloat16, torch.float16):
        from spikeshield.kernels import triton_backend

        return "triton" if triton_backend.available() else None
    return None


# neuron -> {RAN value: forward calls}; weak, so a recorded model is freed as usual
_runs: weakref.WeakKeyDictionary[Any, dict[str, int]] = weakref.WeakKeyDictionary()


def note_run(neuron: object, backend: str | None) -> None:
    """Record that ``neuron``'s forward ran on ``backend`` (None: the reference loop)."""
    if torch.compiler.is_compiling():
        return
    counts = _runs.setdefault(neuron, {})
    counts[RAN[backend]] = counts.get(RAN[backend], 0) + 1


def backends_used(model: torch.nn.Module) -> dict[str, Any]:
    """What ran each spiking neuron of ``model`` so far in this process, for the records.

    ``{"neurons": {module name: {"fused-c" | "triton" | "reference": forward calls}},
    "cpu_kernels_unavailable": reason or None}``. A neuron whose forward has not run has ``{}``.
    """
    from spikeshield.kernels import cpu

    neurons = {
        name or type(model).__name__: dict(_runs.get(module, {}))
        for name, module in model.named_modules()
        if hasattr(module, "fused_program")
    }
    return {"neurons": neurons, "cpu_kernels_unavailable": cpu.unavailable_reason()}


class FusableNeuron(Protocol):
    """What the kernels need from a neuron (``spikeshield.neurons.SpikingNeuron`` provides it)."""

    def check_input(self, x: Tensor) -> None:
        """Raise a one-line error for an input the neuron cannot take."""

    def fused_program(self) -> NeuronProgram | None:
        """The neuron's current configuration in kernel terms, or None for the reference loop."""

    def kernel_oscillations(self, x: Tensor, program: NeuronProgram) -> Oscillations | None:
        """The oscillation of every step (drawn as the reference draws it), or None."""


def _transforms_active() -> bool:
    check = getattr(torch._C, "_are_functorch_transforms_active", None)
    return bool(check()) if check is not None else False


def _program_fits(program: NeuronProgram, x: Tensor) -> bool:
    """The learnable tensors must be on x's device (and p[t] must have T entries)."""
    for t in program.tensors():
        if t.device != x.device or not t.is_floating_point():
            return False
    return program.gain is None or program.gain.shape == (x.shape[0],)


def fused_forward(neuron: FusableNeuron, x: Tensor, pool: bool = False) -> Tensor | None:
    """Spikes of ``neuron`` for ``x`` through a fused kernel, or None where the reference must run.

    With ``pool``, the spikes 2×2 max-pooled over x's last two dimensions (``F.max_pool2d(s, 2)``
    per step, values and gradients), fused into the neuron: CPU kernels only, for neurons without
    oscillation (the noisy neuron included, same noise); None (run the neuron, then pool)
    anywhere else.
    """
    if torch.compiler.is_compiling():  # first: Dynamo cannot trace the ContextVar in enabled()
        return None
    if not enabled() or not isinstance(x, Tensor) or x.dim() < 2 or x.numel() == 0:
        return None
    if _transforms_active():
        return None
    backend = backend_for(x)
    if backend is None:
        return None
    if pool and (backend != "cpu" or x.dim() < 4 or min(x.shape[-2:]) < 2):
        return None
    neuron.check_input(x)
    program = neuron.fused_program()
    if program is None or not _program_fits(program, x):
        return None
    if pool and program.osc_target != OSC_NONE:
        return None
    spikes = _run_fused(backend, neuron, x, program, pool)
    if spikes is not None:
        note_run(neuron, backend)
    return spikes


def _run_fused(
    backend: str, neuron: FusableNeuron, x: Tensor, program: NeuronProgram, pool: bool
) -> Tensor | None:
    if backend == "cpu":
        from spikeshield.kernels import cpu

        if x.dtype != torch.float32 or cpu.library() is None:
            return None
        if program.noisy:
            return cpu.run_noisy(x.contiguous(), noise_keys(x, program), program, pool)
        return cpu.run_neuron(x, program, neuron.kernel_oscillations(x, program), pool)
    from spikeshield.kernels import triton_backend

    if program.noisy:
        return triton_backend.run_noisy(x.contiguous(), noise_keys(x, program), program)
    return triton_backend.run_neuron(x, program, neuron.kernel_oscillations(x, program))


__all__ = [
    "BACKENDS",
    "ENV",
    "RAN",
    "FusableNeuron",
    "backend_for",
    "backends_used",
    "enabled",
    "fused_forward",
    "note_run",
    "reference_only",
    "use_backend",
]
