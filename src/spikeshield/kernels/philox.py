"""Counter-based noise for ``noisy-if``: Philox-4x32-10, Box–Muller, in plain PyTorch.

The noisy neuron's noise ξ[t] is a pure function of (key, t, element index), so the fused
kernels (``csrc/neurons.c``, ``triton_backend.py``) compute it where they use it instead of
reading a tensor that PyTorch's single-threaded generator filled. This module is the reference:
the same numbers from the same counters, element-wise tensor operations only, so the reference
loop and the kernels agree bit for bit on any device.

**Generator.** Philox-4x32 with 10 rounds (Salmon, Moraes, Dror & Shaw, "Parallel random numbers:
as easy as 1, 2, 3", SC 2011; the generator of cuRAND, ``tl.randint4x`` and JAX): a bijection of
a 128-bit counter under a 64-bit key, four 32-bit words out.

**Keying.** One forward call draws one 64-bit key per call from PyTorch's generator —
``torch.randint(0, 2**63 - 1, (1,))``, so ``torch.manual_seed`` reproduces a run — or, inside
:func:`spikeshield.streams.sample_streams`, one key per sample from that sample's stream. Element
``j`` (row-major index within the step, or within the sample for per-sample keys) of step ``t``
takes word ``j mod 4`` of ``Philox(counter = (⌊j/4⌋ mod 2³², ⌊j/4⌋ div 2³², t, 0), key)``.

**Values.** Uniform: ``u = (w >> 8)·2⁻²⁴`` in [0, 1) (24 bits, as ``torch.rand``). Gaussian: words
(w₀, w₁) of a counter give elements 4g, 4g+1 and (w₂, w₃) elements 4g+2, 4g+3 by Box–Muller,
``r = √(−2 ln u₁)``, ``(r cos 2πu₂, r sin 2πu₂)`` with ``u₁ = ((w₀ >> 8) + 1)·2⁻²⁴`` in (0, 1] and
``u₂ = (w₁ >> 8)·2⁻²⁴``. ``ln`` and ``sin``/``cos`` are Cephes' float32 polynomials (about 1 ulp)
written with +, −, ×, √ and selects only (no library transcendental, whose last bit differs
between PyTorch, libm and CUDA); |ξ| ≤ √(48 ln 2) ≈ 5.77 (the 24-bit u₁ cuts the tails there).
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikeshield import streams

# Philox-4x32 multipliers and Weyl key increments (Salmon et al. 2011)
M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
ROUNDS = 10
MASK32 = 0xFFFFFFFF
KEY_HIGH = 2**63 - 1  # keys are drawn from [0, KEY_HIGH)


def _f32(hex_value: str) -> float:
    return float.fromhex(hex_value)


# Cephes logf / sinf / cosf coefficients, exactly as the float32 values the C and Triton kernels use
LOG_P = tuple(
    _f32(h)
    for h in (
        "0x1.204376p-4",
        "-0x1.d7a370p-4",
        "0x1.de4a34p-4",
        "-0x1.fcba9ep-4",
        "0x1.23d37ep-3",
        "-0x1.555ca0p-3",
        "0x1.999d58p-3",
        "-0x1.fffff8p-3",
        "0x1.555554p-2",
    )
)
LOG_Q1, LOG_Q2 = _f32("-0x1.bd0106p-13"), _f32("0x1.63p-1")  # ln 2 = Q2 − Q1 (split)
SQRT_HALF = _f32("0x1.6a09e6p-1")
SIN_P = (_f32("-0x1.9943f2p-13"), _f32("0x1.11073cp-7"), _f32("-0x1.555546p-3"))
COS_P = (_f32("0x1.99eb9cp-16"), _f32("-0x1.6c0c34p-10"), _f32("0x1.55554ap-5"))
TWO_PI_2M24 = _f32("0x1.921fb6p-22")  # float32(2π)·2⁻²⁴


def draw_keys(x_t: Tensor, *, batch_dim: int = 0) -> Tensor:
    """The keys of one forward call: ``[1]`` from PyTorch's generator, or ``[n]``, one per sample of
    ``x_t``'s batch dimension inside :func:`~spikeshield.streams.sample_streams` (int64, CPU)."""
    return streams.randint(x_t, KEY_HIGH, batch_dim=batch_dim)


def _mulhilo(a: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """(high, low) 32-bit words of ``a·m`` (a: int64 values < 2³², m < 2³²) without int64 overflow."""
    p_lo = a * (m & 0xFFFF)
    p_hi = a * (m >> 16)
    s = p_lo + ((p_hi & 0xFFFF) << 16)
    return (s >> 32) + (p_hi >> 16), s & MASK32


def philox4x32(counter: tuple[Tensor, Tensor, Tensor, Tensor], key: tuple[Tensor, Tensor]) -> list[Tensor]:
    """Philox-4x32-10 of ``counter`` under ``key`` (int64 tensors holding 32-bit words; broadcast)."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(ROUNDS):
        hi0, lo0 = _mulhilo(c0, M0)
        hi1, lo1 = _mulhilo(c2, M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32
    return [c0, c1, c2, c3]


def _top24(w: Tensor) -> Tensor:
    return (w >> 8).to(torch.float32)


def _log(u: Tensor) -> Tensor:
    """ln u for u in (0, 1] (Cephes logf)."""
    bits = u.view(torch.int32)
    e = ((bits >> 23) - 126).to(torch.float32)
    m = ((bits & 0x7FFFFF) | 0x3F000000).view(torch.float32)  # u = m·2^e, m in [0.5, 1)
    small = m < SQRT_HALF
    e = torch.where(small, e - 1.0, e)
    f = torch.where(small, (m + m) - 1.0, m - 1.0)
    z = f * f
    y = torch.full_like(f, LOG_P[0])
    for c in LOG_P[1:]:
        y = y * f + c
    y = (y * f) * z
    y = y + e * LOG_Q1
    y = y + z * -0.5
    return (f + y) + e * LOG_Q2


def _sincos_turn(w: Tensor) -> tuple[Tensor, Tensor]:
    """(cos 2πu, sin 2πu) for u = (w >> 8)·2⁻²⁴: quadrant from the integer, Cephes on [−π/4, π/4]."""
    k = w >> 8
    q = (k + (1 << 21)) >> 22
    theta = (k - (q << 22)).to(torch.float32) * TWO_PI_2M24
    z = theta * theta
    s = ((((z * SIN_P[0]) + SIN_P[1]) * z + SIN_P[2]) * z) * theta + theta
    c = ((((z * COS_P[0]) + COS_P[1]) * z + COS_P[2]) * z) * z
    c = (c - z * 0.5) + 1.0
    swap = (q & 1) == 1
    cos, sin = torch.where(swap, s, c), torch.where(swap, c, s)
    cos = torch.where(((q + 1) & 2) == 2, -cos, cos)
    sin = torch.where((q & 2) == 2, -sin, sin)
    return cos, sin


def _box_muller(w_radius: Tensor, w_angle: Tensor) -> tuple[Tensor, Tensor]:
    u1 = (_top24(w_radius) + 1.0) * 2.0**-24
    # √ correctly rounded (as C's sqrtf, Triton's sqrt_rn): PyTorch's float32 CPU sqrt is not
    # always (1 ulp off on some inputs); the float64 root rounded to float32 is
    r = torch.sqrt((_log(u1) * -2.0).double()).float()
    cos, sin = _sincos_turn(w_angle)
    return r * cos, r * sin


def raw_noise(
    shape: torch.Size | tuple[int, ...], keys: Tensor, t: int, kind: str, device: torch.device
) -> Tensor:
    """Step ``t``'s raw noise (N(0, 1) for ``kind="gaussian"``, else U[0, 1)), float32 ``shape``.

    ``keys``: ``[1]`` (one key for the step) or ``[n]`` with ``shape[0] == n`` (one per sample;
    the index then runs within each sample).
    """
    rows = keys.numel()
    numel = 1
    for size in shape:
        numel *= int(size)
    per_row = numel // rows
    groups = (per_row + 3) // 4
    g = torch.arange(groups, dtype=torch.int64, device=device)
    key = keys.to(device=device, dtype=torch.int64).view(rows, 1)
    zero = torch.zeros((), dtype=torch.int64, device=device)
    words = philox4x32((g & MASK32, g >> 32, zero + t, zero), (key & MASK32, key >> 32))
    if kind == "gaussian":
        z0, z1 = _box_muller(words[0], words[1])
        z2, z3 = _box_muller(words[2], words[3])
        values = torch.stack((z0, z1, z2, z3), dim=-1)
    else:
        values = torch.stack([_top24(w) * 2.0**-24 for w in words], dim=-1)
    return values.reshape(rows, groups * 4)[:, :per_row].reshape(shape)


__all__ = ["KEY_HIGH", "draw_keys", "philox4x32", "raw_noise"]
