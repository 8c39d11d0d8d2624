"""Pure neuron equations: charge and reset as stateless functions of tensors.

Notation (see ``docs/neurons.md``): input current X[t], pre-spike potential H[t], post-reset
potential V[t], spike S[t] = Θ(H[t] − V_th). Every function here is side-effect free, so a
neuron step is a composition ``V[t−1], X[t] → H[t] → S[t] → V[t]`` that autograd, attacks,
``torch.compile`` and the fused kernels can all reason about.
"""

from __future__ import annotations

import torch
from torch import Tensor


def charge_no_leak(v: Tensor, x: Tensor) -> Tensor:
    """IF: ``H = V + X``."""
    return v + x


def charge_exponential(
    v: Tensor, x: Tensor, inv_tau: Tensor | float, v_reset: float, decay_input: bool
) -> Tensor:
    """Exponential leak (LIF).

    ``decay_input=True``:  ``H = V + (X − (V − V_reset)) / τ``
    ``decay_input=False``: ``H = V − (V − V_reset) / τ + X``
    """
    if decay_input:
        return v + (x - (v - v_reset)) * inv_tau
    return v - (v - v_reset) * inv_tau + x


def charge_multiplicative(v: Tensor, x: Tensor, decay: float) -> Tensor:
    """Multiplicative leak (RSSNN form): ``H = λ·V + X``."""
    return decay * v + x


def charge_linear(v: Tensor, x: Tensor, leak: float, floor: float | None) -> Tensor:
    """Linear leak (Che et al. 2023, reconstruction): ``H = max(V − λ_leak, V_floor) + X``.

    ``floor=None`` removes the floor, so the potential can leak below rest.
    """
    leaked = v - leak
    if floor is not None:
        leaked = torch.clamp(leaked, min=floor)
    return leaked + x


def reset_hard(h: Tensor, s: Tensor, v_reset: float) -> Tensor:
    """Hard reset: ``V = H·(1 − S) + V_reset·S``."""
    return h * (1.0 - s) + v_reset * s


def reset_soft(h: Tensor, s: Tensor, v_threshold: float) -> Tensor:
    """Soft reset (reset by subtraction): ``V = H − V_th·S``."""
    return h - v_threshold * s
