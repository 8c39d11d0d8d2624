"""Exact maps between spikeshield's discrete-time neurons and NIR's continuous-time ones.

NIR (Pedersen et al., Nature Communications 2024) defines neurons by ODEs; a simulator with time
step ``dt`` integrates them with the forward-Euler step that Norse and snnTorch use::

    NIR LIF:  τ dv/dt = (v_leak − v) + r·I   →   v ← v + (dt/τ)·(v_leak − v + r·I)
    NIR IF:     dv/dt = r·I                  →   v ← v + dt·r·I
    both:     z = Θ(v − v_threshold);  v ← v_reset where z = 1   (hard reset)

Matching each spikeshield charge equation term by term gives (``τ``, ``λ`` ours, in steps)::

    if                 H = V + X                    IF   r = 1/dt
    lif decay_input    H = V + (X − (V − V_r))/τ    LIF  τ_nir = τ·dt,        r = 1, v_leak = V_r
    lif !decay_input   H = V − (V − V_r)/τ + X      LIF  τ_nir = τ·dt,        r = τ, v_leak = V_r
    lif decay=λ        H = λ·V + X                  LIF  τ_nir = dt/(1 − λ),  r = 1/(1 − λ), v_leak = 0
                                                    (λ = 1 is the IF row)

and ``v_threshold = V_th``, ``v_reset = V_r`` in every row. Each row is exact: one Euler step of
the NIR equation is our charge equation, operation for operation. What NIR cannot say is refused
(:data:`REFUSED`, soft reset, a start potential other than rest); training-only settings (the
surrogate gradient, ``detach_reset``) travel in the node's metadata so that :func:`neuron_from_nir`
restores them.

One convention differs and is kept: spikeshield fires at ``H ≥ V_th``, NIR and its simulators at
``v > v_threshold``; the two disagree only for a potential exactly on the threshold.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from spikeshield.errors import UsageError
from spikeshield.interop._nir import NIRError, close, require_nir, uniform
from spikeshield.neurons import IFNode, LIFNode, PLIFNode, SpikingNeuron

#: why each neuron NIR cannot express is refused (registry name -> reason)
REFUSED = {
    "linear-lif": "its leak is linear (V − λ per step, with a floor); NIR neurons leak exponentially",
    "klif": "its pre-fire ReLU(k·H) with a learned k has no NIR counterpart",
    "dlif": "its input gain p[t] changes with the time step; NIR parameters are constant in time",
    "oscillating-lif": "its potential or threshold oscillates with time; NIR has no time-dependent neuron",
    "noisy-if": "it adds random noise to the potential; NIR neurons are deterministic",
}
#: metadata keys of an exported neuron node
FORM, SURROGATE, DETACH = "spikeshield_charge", "spikeshield_surrogate", "spikeshield_detach_reset"


def _full(shape: tuple[int, ...], value: float) -> np.ndarray:
    return np.full(shape, value, dtype=np.float64)


def _check_exportable(neuron: SpikingNeuron, layer: str) -> None:
    name = neuron.name or type(neuron).__name__
    if type(neuron) not in (IFNode, LIFNode, PLIFNode):
        reason = REFUSED.get(neuron.name, "no NIR counterpart is known for this neuron")
        raise UsageError(f"layer {layer} ({name}) cannot be exported to NIR: {reason}")
    if neuron.reset_mode != "hard":
        raise UsageError(
            f"layer {layer} ({name}) cannot be exported to NIR: NIR neurons reset to v_reset "
            "(hard reset); a soft reset (subtract V_th) has no NIR form"
        )


def _metadata(neuron: SpikingNeuron, form: str) -> dict[str, Any]:
    s = neuron.surrogate.spec()
    surrogate = f"{s['name']}:{s[neuron.surrogate.param_name]!r}"
    return {FORM: form, SURROGATE: surrogate, DETACH: int(neuron.detach_reset)}


def neuron_to_nir(neuron: SpikingNeuron, shape: tuple[int, ...], dt: float, layer: str) -> Any:
    """The NIR ``IF`` / ``LIF`` node of ``neuron`` for a layer of ``shape`` (no batch axis).

    Raises:
        UsageError: the neuron, its reset or its start potential has no exact NIR form.
    """
    nir = require_nir()
    _check_exportable(neuron, layer)
    vth, vr = _full(shape, neuron.v_threshold), _full(shape, neuron.v_reset)
    decay = getattr(neuron, "decay", None)
    if isinstance(neuron, PLIFNode) or (isinstance(neuron, LIFNode) and decay is None):
        learned = getattr(neuron, "tau_logit", None)
        tau = neuron.spec()["tau"] if learned is None else 1.0 / float(torch.sigmoid(learned.detach()))
        r, v_leak, form = (1.0 if neuron.decay_input else tau), neuron.v_reset, "exponential"
        node = nir.LIF(
            tau=_full(shape, tau * dt),
            r=_full(shape, r),
            v_leak=_full(shape, v_leak),
            v_threshold=vth,
            v_reset=vr,
            metadata=_metadata(neuron, form),
        )
    elif decay is not None and decay < 1.0:
        v_leak, form = 0.0, "multiplicative"
        node = nir.LIF(
            tau=_full(shape, dt / (1.0 - decay)),
            r=_full(shape, 1.0 / (1.0 - decay)),
            v_leak=_full(shape, 0.0),
            v_threshold=vth,
            v_reset=vr,
            metadata=_metadata(neuron, form),
        )
    else:  # IF, or the multiplicative LIF with λ = 1
        v_leak = 0.0
        node = nir.IF(r=_full(shape, 1.0 / dt), v_threshold=vth, v_reset=vr, metadata=_metadata(neuron, "if"))
    if neuron.v_init != v_leak:
        raise UsageError(
            f"layer {layer} ({neuron.name}) cannot be exported to NIR: it starts at v_init = "
            f"{neuron.v_init:g}, but NIR has no start potential (simulators start at rest, {v_leak:g})"
        )
    return node


def _training_options(node: Any) -> dict[str, Any]:
    meta = getattr(node, "metadata", None) or {}
    options: dict[str, Any] = {}
    if SURROGATE in meta:
        options["surrogate"] = str(meta[SURROGATE])
    if DETACH in meta:
        options["detach_reset"] = bool(int(meta[DETACH]))
    return options


def _if_from_nir(node: Any, dt: float, where: str) -> SpikingNeuron:
    gain = uniform(node.r, "r", where) * dt  # per-step input gain
    if gain <= 0:
        raise NIRError(f"node {where!r}: IF input gain r·dt = {gain:g} must be > 0")
    scale = 1.0 if close(gain, 1.0) else gain  # potentials in units of the gain (exact in ℝ)
    vth = uniform(node.v_threshold, "v_threshold", where) / scale
    vr = uniform(node.v_reset, "v_reset", where) / scale
    return IFNode(v_threshold=vth, v_reset=vr, v_init=0.0, **_training_options(node))


def _lif_from_nir(node: Any, dt: float, where: str) -> SpikingNeuron:
    tau_nir = uniform(node.tau, "tau", where)
    leak = dt / tau_nir if tau_nir > 0 else float("inf")  # fraction leaked per step
    if not 0.0 < leak < 1.0:
        raise NIRError(
            f"node {where!r}: dt/tau = {leak:g} must be in (0, 1) (tau = {tau_nir:g}, dt = {dt:g}); "
            "is dt right for this file?"
        )
    gain = uniform(node.r, "r", where) * leak  # per-step input gain r·dt/τ
    v_leak = uniform(node.v_leak, "v_leak", where)
    vth = uniform(node.v_threshold, "v_threshold", where)
    vr = uniform(node.v_reset, "v_reset", where)
    if gain <= 0:
        raise NIRError(f"node {where!r}: LIF input gain r·dt/tau = {gain:g} must be > 0")
    options = _training_options(node)
    form = str((getattr(node, "metadata", None) or {}).get(FORM, ""))
    if close(gain, leak) and v_leak == vr and form != "multiplicative":
        return LIFNode(tau=tau_nir / dt, decay_input=True, v_reset=vr, v_threshold=vth, **options)
    scale = 1.0 if close(gain, 1.0) else gain
    if v_leak == 0.0 and form != "exponential":
        return LIFNode(decay=1.0 - leak, v_threshold=vth / scale, v_reset=vr / scale, v_init=0.0, **options)
    if v_leak != vr:
        raise NIRError(
            f"node {where!r}: LIF leaks toward v_leak = {v_leak:g} but resets to v_reset = {vr:g}; "
            "spikeshield's exponential LIF rests at its reset potential"
        )
    return LIFNode(
        tau=tau_nir / dt, decay_input=False, v_threshold=vth / scale, v_reset=vr / scale, **options
    )


def neuron_from_nir(node: Any, dt: float, where: str) -> SpikingNeuron:
    """The spikeshield neuron of a NIR ``IF`` or ``LIF`` node simulated with step ``dt``.

    The inverse of :func:`neuron_to_nir` (form, surrogate and ``detach_reset`` come back from the
    node's metadata). Foreign nodes map onto the form whose arithmetic their writer simulates:
    ``r = 1`` (Norse) to ``decay_input``, ``r = τ/dt`` with ``v_leak = 0`` (snnTorch) to the
    multiplicative form. Any other input gain ``g`` is absorbed by measuring potentials in units
    of ``g`` (threshold and reset divided by ``g``), which is exact in real arithmetic.

    Raises:
        NIRError: per-neuron parameters differ, dt/τ is outside (0, 1), the gain is not positive,
            or v_leak differs from both 0 and v_reset.
    """
    nir = require_nir()
    if isinstance(node, nir.IF):
        return _if_from_nir(node, dt, where)
    if isinstance(node, nir.LIF):
        return _lif_from_nir(node, dt, where)
    raise NIRError(f"node {where!r} ({type(node).__name__}) is not a neuron spikeshield can import")
