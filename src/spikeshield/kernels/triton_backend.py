"""The CUDA backend: Triton kernels for the fused multi-step neuron (float32, bfloat16, float16).

One program handles ``BLOCK`` neurons and loops over T, holding V[t] in registers. The neuron's
configuration (charge kind, KLIF, reset, surrogate, oscillation, gain) is compile-time
(``tl.constexpr``), so each configuration gets its own straight-line kernel. Arithmetic is in
float32 whatever the input dtype; spikes and dL/dX are stored in the input's dtype.

Forward reads X and writes S plus H[t] (float32, the one tensor the backward needs); the
backward walks t in reverse reading dL/dS and H (and X for the p[t] / 1/τ gradients) and writes
dL/dX: 24 bytes per element in float32 over forward and backward, the bandwidth floor of a
fused kernel that saves one float (see docs/performance.md). Parameter gradients are reduced per
program into a small buffer and summed by PyTorch (deterministic, no atomics).

In float32 the forward evaluates the reference's operations one at a time in the same order
(kernels are launched with ``enable_fp_fusion=False``, so no multiply-add is contracted, and
KLIF's ``F / k`` uses IEEE division), so the spikes equal the PyTorch reference's on the same
device. Without a GPU the kernels run under ``TRITON_INTERPRET=1`` on CPU tensors
(tests/kernels/test_triton_interpreter.py); timings there mean nothing.
"""

# Kernel code keeps compile-time branches as plain if-blocks (one per tl.constexpr case).
# ruff: noqa: SIM108

from __future__ import annotations

import functools
import os
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from spikeshield.kernels.program import (
    CHARGE_LIF,
    CHARGE_LIF_NO_DECAY_INPUT,
    CHARGE_LINEAR,
    OSC_NONE,
    NeuronProgram,
    Oscillations,
    apply_neuron,
)

try:  # Triton is optional: CUDA builds of PyTorch ship it, CPU builds do not
    import triton
    import triton.language as tl

    HAVE_TRITON = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_TRITON = False

BLOCK = 1024
NUM_WARPS = 4


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=1)
def _cuda_ok() -> bool:
    return torch.cuda.is_available()


def available() -> bool:
    """Triton importable and a CUDA device present (or the interpreter selected)."""
    return HAVE_TRITON and (interpreting() or _cuda_ok())


if HAVE_TRITON:

    @triton.jit
    def _charge(v, x, beta, decay, leak, floor_, v_reset, CHARGE: tl.constexpr):
        """H from V[t−1] and X'[t], the reference's operations in its order."""
        if CHARGE == 0:  # IF
            h = v + x
        elif CHARGE == 1:  # LIF, decay_input
            h = v + (x - (v - v_reset)) * beta
        elif CHARGE == 2:  # LIF, not decay_input
            h = (v - (v - v_reset) * beta) + x
        elif CHARGE == 3:  # multiplicative
            h = decay * v + x
        elif CHARGE == 4:  # linear leak with floor
            lk = v - leak
            h = tl.where(lk < floor_, floor_, lk) + x
        else:  # linear leak without floor
            h = (v - leak) + x
        return h

    @triton.jit
    def _prefire(h, k, KLIF: tl.constexpr):
        if KLIF:
            y = k * h
            f = tl.where(y < 0.0, 0.0, y)
        else:
            f = h
        return f

    @triton.jit
    def _reset(f, s, k, v_th, v_reset, HARD: tl.constexpr, SCALE: tl.constexpr):
        if SCALE:
            if HARD:
                v = tl.math.div_rn(f, k) * (1.0 - s) + v_reset * s
            else:
                v = tl.math.div_rn(f - v_th * s, k)
        else:
            if HARD:
                v = f * (1.0 - s) + v_reset * s
            else:
                v = f - v_th * s
        return v

    @triton.jit
    def _surrogate_grad(x, a, c1, c2, SG: tl.constexpr):
        if SG == 0:  # sigmoid
            sig = 1.0 / (1.0 + tl.exp(-(a * x)))
            g = a * sig * (1.0 - sig)
        elif SG == 1:  # atan
            y = c1 * x
            g = c2 / (1.0 + y * y)
        elif SG == 2:  # rectangle
            g = tl.where(tl.abs(x) < c1, c2, 0.0)
        elif SG == 3:  # triangle
            d = a - tl.abs(x)
            g = tl.where(d > 0.0, d, 0.0) / c2
        else:  # gaussian
            y = x / a
            g = tl.exp(-0.5 * (y * y)) / c2
        return g

    @triton.jit
    def _osc_value(osc_ptr, osc_row_ptrs, t, mask, OSC_TENSOR: tl.constexpr):
        """Oscillation of step t: a scalar osc[t], or a per-neuron row."""
        if OSC_TENSOR:
            o = tl.load(osc_row_ptrs, mask=mask, other=0.0).to(tl.float32)
        else:
            o = tl.load(osc_ptr + t)
        return o

    @triton.jit
    def _forward_kernel(
        x_ptr, s_ptr, h_ptr, gain_ptr, osc_ptr, osc_t_ptr,
        T, N, XS, beta, decay, leak, floor_, k, v_th, v_reset, v_init,
        CHARGE: tl.constexpr, KLIF: tl.constexpr, HARD: tl.constexpr, SCALE: tl.constexpr,
        OSC: tl.constexpr, OSC_TENSOR: tl.constexpr, HAS_GAIN: tl.constexpr, SAVE_H: tl.constexpr,
        BLOCK: tl.constexpr,
    ):  # fmt: skip
        pid = tl.program_id(0)
        offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        # row pointers advance by N per step (64-bit pointer arithmetic, no t·N overflow)
        px = x_ptr + offs
        ps = s_ptr + offs
        ph = h_ptr + offs
        po = osc_t_ptr + offs
        v = tl.zeros([BLOCK], dtype=tl.float32) + v_init
        for t in range(T):
            x = tl.load(px, mask=mask, other=0.0).to(tl.float32)
            if HAS_GAIN:
                x = tl.load(gain_ptr + t) * x
            h = _charge(v, x, beta, decay, leak, floor_, v_reset, CHARGE)
            if OSC == 1:
                h = h + _osc_value(osc_ptr, po, t, mask, OSC_TENSOR)
            f = _prefire(h, k, KLIF)
            xs = f - v_th
            if OSC == 2:
                xs = xs - _osc_value(osc_ptr, po, t, mask, OSC_TENSOR)
            s = tl.where(xs >= 0.0, 1.0, 0.0)
            tl.store(ps, s.to(s_ptr.dtype.element_ty), mask=mask)
            if SAVE_H:
                tl.store(ph, h, mask=mask)
            v = _reset(f, s, k, v_th, v_reset, HARD, SCALE)
            px += XS  # N, or 0 for one X repeated over T
            ps += N
            ph += N
            po += N

    @triton.jit
    def _backward_kernel(
        x_ptr, h_ptr, gs_ptr, gx_ptr, gain_ptr, osc_ptr, osc_t_ptr, osc_b_ptr, osc_b_t_ptr,
        dk_ptr, dbeta_ptr, dgain_ptr,
        T, N, XS, last_row, last_x_row, beta, decay, leak, floor_, k, v_th, v_reset, v_init,
        sg_a, sg_c1, sg_c2,
        CHARGE: tl.constexpr, KLIF: tl.constexpr, HARD: tl.constexpr, SCALE: tl.constexpr,
        DETACH: tl.constexpr, SG: tl.constexpr, OSC: tl.constexpr, OSC_TENSOR: tl.constexpr,
        FAKE: tl.constexpr, OSC_B_TENSOR: tl.constexpr, HAS_GAIN: tl.constexpr,
        LEARN_K: tl.constexpr, LEARN_BETA: tl.constexpr, LEARN_GAIN: tl.constexpr, NEED_VP: tl.constexpr,
        ACC: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        pid = tl.program_id(0)
        offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        # row pointers of step T−1 (last_row = (T−1)·N, computed on the host), moved back by N
        start = offs + last_row
        px = x_ptr + (offs + last_x_row)
        ph = h_ptr + start
        pgs = gs_ptr + start
        pgx = gx_ptr + start
        gacc = tl.zeros([BLOCK], dtype=tl.float32)  # ACC: dL/dX of a repeated X, summed over t
        po = osc_t_ptr + start
        pob = osc_b_t_ptr + start
        dv = tl.zeros([BLOCK], dtype=tl.float32)
        dk_acc = tl.zeros([BLOCK], dtype=tl.float32)
        dbeta_acc = tl.zeros([BLOCK], dtype=tl.float32)
        h_next = tl.load(ph, mask=mask, other=0.0)
        for i in range(T):
            t = T - 1 - i
            h = h_next
            if t > 0:  # H[t−1]: loaded once, used for V[t−1] now and as H next iteration
                h_next = tl.load(ph - N, mask=mask, other=0.0)
            if NEED_VP:
                vp = tl.zeros([BLOCK], dtype=tl.float32) + v_init
                if t > 0:
                    f_prev = _prefire(h_next, k, KLIF)
                    xs_prev = f_prev - v_th
                    if OSC == 2:
                        xs_prev = xs_prev - _osc_value(osc_ptr, po - N, t - 1, mask, OSC_TENSOR)
                    s_prev = tl.where(xs_prev >= 0.0, 1.0, 0.0)
                    vp = _reset(f_prev, s_prev, k, v_th, v_reset, HARD, SCALE)
            f = _prefire(h, k, KLIF)
            xs = f - v_th
            if OSC != 0:
                o = _osc_value(osc_ptr, po, t, mask, OSC_TENSOR)
                if OSC == 2:
                    xs = xs - o
            s = tl.where(xs >= 0.0, 1.0, 0.0)
            xb = xs
            if FAKE:
                ob = _osc_value(osc_b_ptr, pob, t, mask, OSC_B_TENSOR)
                if OSC == 1:
                    xb = (xs - o) + ob
                else:
                    xb = (xs + o) - ob
            sg = _surrogate_grad(xb, sg_a, sg_c1, sg_c2, SG)
            gs = tl.load(pgs, mask=mask, other=0.0).to(tl.float32)
            # reset and fire: dF
            if SCALE:
                inv_k = 1.0 / k
                if HARD:
                    ds = gs
                    if not DETACH:
                        ds = gs + dv * (v_reset - f * inv_k)
                    df = dv * (1.0 - s) * inv_k + ds * sg
                    if LEARN_K:
                        dk_acc += -dv * (f * inv_k * inv_k) * (1.0 - s)
                else:
                    ds = gs
                    if not DETACH:
                        ds = gs - dv * (v_th * inv_k)
                    df = dv * inv_k + ds * sg
                    if LEARN_K:
                        dk_acc += -dv * ((f - v_th * s) * inv_k * inv_k)
            elif HARD:
                ds = gs
                if not DETACH:
                    ds = gs + dv * (v_reset - f)
                df = dv * (1.0 - s) + ds * sg
            else:
                ds = gs
                if not DETACH:
                    ds = gs - dv * v_th
                df = dv + ds * sg
            # pre-fire: dH
            if KLIF:
                on = k * h > 0.0
                if LEARN_K:
                    dk_acc += tl.where(on, df * h, 0.0)
                dh = tl.where(on, df * k, 0.0)
            else:
                dh = df
            # charge: dX' and dV[t−1]
            if HAS_GAIN:
                g = tl.load(gain_ptr + t)
            if CHARGE == 1:
                if LEARN_BETA:
                    x = tl.load(px, mask=mask, other=0.0).to(tl.float32)
                    if HAS_GAIN:
                        x = g * x
                    dbeta_acc += dh * (x - (vp - v_reset))
                gxin = dh * beta
                dv = dh - gxin
            elif CHARGE == 2:
                if LEARN_BETA:
                    dbeta_acc += -dh * (vp - v_reset)
                gxin = dh
                dv = dh - dh * beta
            elif CHARGE == 3:
                gxin = dh
                dv = dh * decay
            elif CHARGE == 4:
                gxin = dh
                dv = tl.where(vp - leak >= floor_, dh, 0.0)
            else:
                gxin = dh
                dv = dh
            if HAS_GAIN:
                if LEARN_GAIN:
                    xr = tl.load(px, mask=mask, other=0.0).to(tl.float32)
                    tl.store(dgain_ptr + pid * T + t, tl.sum(tl.where(mask, gxin * xr, 0.0), axis=0))
                gxin = gxin * g
            if ACC:
                gacc += gxin
            else:
                tl.store(pgx, gxin.to(gx_ptr.dtype.element_ty), mask=mask)
            px -= XS
            ph -= N
            pgs -= N
            pgx -= N
            po -= N
            pob -= N
        if ACC:
            tl.store(gx_ptr + offs, gacc.to(gx_ptr.dtype.element_ty), mask=mask)
        if LEARN_K:
            tl.store(dk_ptr + pid, tl.sum(tl.where(mask, dk_acc, 0.0), axis=0))
        if LEARN_BETA:
            tl.store(dbeta_ptr + pid, tl.sum(tl.where(mask, dbeta_acc, 0.0), axis=0))

    @triton.jit
    def _philox_log(u):
        """ln u for u in (0, 1]: philox._log's operations (Cephes logf), constants as float32."""
        bits = u.to(tl.int32, bitcast=True)
        e = ((bits >> 23) - 126).to(tl.float32)
        m = ((bits & 0x7FFFFF) | 0x3F000000).to(tl.float32, bitcast=True)
        small = m < 0.7071067690849304
        e = tl.where(small, e - 1.0, e)
        f = tl.where(small, (m + m) - 1.0, m - 1.0)
        z = f * f
        y = f * 0.07037683576345444 + -0.11514610052108765
        y = y * f + 0.11676998436450958
        y = y * f + -0.12420140951871872
        y = y * f + 0.14249323308467865
        y = y * f + -0.16668057441711426
        y = y * f + 0.2000071406364441
        y = y * f + -0.24999994039535522
        y = y * f + 0.3333333134651184
        y = (y * f) * z
        y = y + e * -0.00021219444170128554
        y = y + z * -0.5
        return (f + y) + e * 0.693359375

    @triton.jit
    def _philox_raw(key, t, j, GAUSSIAN: tl.constexpr):
        """Raw noise of element j (int64) of step t under key (int64): philox.raw_noise's value."""
        g = j >> 2
        lane = j & 3
        zero = tl.zeros_like(lane).to(tl.uint32)
        w0, w1, w2, w3 = tl.philox(
            key, (g & 0xFFFFFFFF).to(tl.uint32), (g >> 32).to(tl.uint32), zero + t.to(tl.uint32), zero
        )
        if GAUSSIAN:  # lanes 0, 1 from (w0, w1); lanes 2, 3 from (w2, w3): r·cos, r·sin
            w_radius = tl.where(lane < 2, w0, w2)
            w_angle = tl.where(lane < 2, w1, w3)
            u1 = ((w_radius >> 8).to(tl.float32) + 1.0) * 5.960464477539063e-08
            r = tl.sqrt_rn(_philox_log(u1) * -2.0)
            k = (w_angle >> 8).to(tl.int32)
            q = (k + 2097152) >> 22
            theta = (k - (q << 22)).to(tl.float32) * 3.7450703871400037e-07
            z = theta * theta
            sn = (((z * -0.00019515295571181923) + 0.008332161232829094) * z + -0.16666655242443085) * z
            sn = sn * theta + theta
            cs = ((((z * 2.44331567955669e-05) + -0.0013887316454201937) * z + 0.04166664555668831) * z) * z
            cs = (cs - z * 0.5) + 1.0
            swap = (q & 1) == 1
            c = tl.where(swap, sn, cs)
            s = tl.where(swap, cs, sn)
            c = tl.where(((q + 1) & 2) == 2, -c, c)
            s = tl.where((q & 2) == 2, -s, s)
            raw = r * tl.where((lane & 1) == 1, s, c)
        else:
            w = tl.where(lane == 0, w0, tl.where(lane == 1, w1, tl.where(lane == 2, w2, w3)))
            raw = (w >> 8).to(tl.float32) * 5.960464477539063e-08
        return raw

    @triton.jit
    def _noisy_forward_kernel(
        x_ptr, keys_ptr, s_ptr, point_ptr, n, rows, per_row, scale, offset, v_th,
        NOISY: tl.constexpr, GAUSSIAN: tl.constexpr, KEEP_POINT: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        if NOISY:  # element j of row r of step t (philox.raw_noise's counters)
            line = offs // per_row
            j = offs - line * per_row
            t = line // rows
            key = tl.load(keys_ptr + (line - t * rows), mask=mask, other=0)
            xi = _philox_raw(key, t, j, GAUSSIAN) * scale + offset
        else:
            xi = offset
        p = (x + xi) - v_th
        tl.store(s_ptr + offs, tl.where(p >= 0.0, 1.0, 0.0).to(s_ptr.dtype.element_ty), mask=mask)
        if KEEP_POINT:
            tl.store(point_ptr + offs, p, mask=mask)

    @triton.jit
    def _noisy_backward_kernel(
        src_ptr, gs_ptr, gx_ptr, n, offset, v_th, sg_a, sg_c1, sg_c2,
        FROM_INPUT: tl.constexpr, SG: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        src = tl.load(src_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        if FROM_INPUT:
            src = (src + offset) - v_th
        g = _surrogate_grad(src, sg_a, sg_c1, sg_c2, SG)
        gs = tl.load(gs_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(gx_ptr + offs, (gs * g).to(gx_ptr.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------- autograd glue
_LAUNCH = {"num_warps": NUM_WARPS, "enable_fp_fusion": False}


def _osc_args(values: list[float] | Tensor | None, device: torch.device) -> tuple[Tensor, Tensor, bool]:
    """(scalars[T], tensor[T·N], is_tensor) — the unused one is a 1-element dummy."""
    dummy = torch.zeros(1, dtype=torch.float32, device=device)
    if values is None:
        return dummy, dummy, False
    if isinstance(values, Tensor):
        return dummy, values, True
    return torch.tensor(values, dtype=torch.float32, device=device), dummy, False


def _scalars(program: NeuronProgram, inv_tau: Tensor | None, k: Tensor | None) -> tuple[float, float]:
    beta = float(inv_tau) if inv_tau is not None else program.beta
    return beta, float(k) if k is not None else 1.0


class TritonNeuronFunction(torch.autograd.Function):
    """Fused multi-step neuron on CUDA (or the Triton interpreter).

    With ``repeated``, ``x`` is one step ``[...]`` seen by all ``steps`` steps (read with stride
    0; its gradient is summed over t in registers), as in :class:`spikeshield.kernels.cpu.NeuronFunction`.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        inv_tau: Tensor | None,
        k: Tensor | None,
        gain: Tensor | None,
        program: NeuronProgram,
        osc: Oscillations | None,
        steps: int,
        repeated: bool,
    ) -> Tensor:
        n = x.numel() if repeated else x[0].numel()
        beta, k_value = _scalars(program, inv_tau, k)
        shape = (steps, *x.shape) if repeated else x.shape
        spikes = torch.empty(shape, dtype=x.dtype, device=x.device)
        save_h = any(ctx.needs_input_grad[:4])
        h = torch.empty(shape, dtype=torch.float32, device=x.device) if save_h else spikes
        gain_values = gain.detach().float().contiguous() if gain is not None else spikes
        osc_s, osc_t, osc_is_t = _osc_args(osc.forward if osc else None, x.device)
        grid = (triton.cdiv(n, BLOCK),)
        _forward_kernel[grid](
            x, spikes, h, gain_values, osc_s, osc_t,
            steps, n, 0 if repeated else n, beta, program.decay, program.leak, program.floor, k_value,
            program.v_threshold, program.v_reset, program.v_init,
            CHARGE=program.charge, KLIF=program.klif, HARD=program.hard_reset, SCALE=program.scale_reset,
            OSC=program.osc_target, OSC_TENSOR=osc_is_t, HAS_GAIN=gain is not None, SAVE_H=save_h,
            BLOCK=BLOCK, **_LAUNCH,
        )  # fmt: skip
        ctx.save_for_backward(x, h if save_h else None, inv_tau, k, gain)
        ctx.program, ctx.osc, ctx.steps, ctx.repeated = program, osc, steps, repeated
        return spikes

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_spikes: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, h, inv_tau, k, gain = ctx.saved_tensors
        program: NeuronProgram = ctx.program
        osc: Oscillations | None = ctx.osc
        steps, repeated = ctx.steps, ctx.repeated
        n = x.numel() if repeated else x[0].numel()
        beta, k_value = _scalars(program, inv_tau, k)
        want_tau, want_k, want_gain = ctx.needs_input_grad[1:4]
        grad_spikes = grad_spikes.contiguous()
        grad_x = torch.empty_like(x)
        programs = triton.cdiv(n, BLOCK)
        f32 = {"dtype": torch.float32, "device": x.device}
        dk = torch.zeros(programs, **f32)
        dbeta = torch.zeros(programs, **f32)
        dgain = torch.zeros(programs * steps, **f32)
        gain_values = gain.detach().float().contiguous() if gain is not None else dk
        osc_s, osc_t, osc_is_t = _osc_args(osc.forward if osc else None, x.device)
        osc_b_s, osc_b_t, osc_b_is_t = _osc_args(osc.backward if osc else None, x.device)
        learn_beta = want_tau and program.charge in (CHARGE_LIF, CHARGE_LIF_NO_DECAY_INPUT)
        sg = program.surrogate
        x_stride = 0 if repeated else n
        _backward_kernel[(programs,)](
            x, h, grad_spikes, grad_x, gain_values, osc_s, osc_t, osc_b_s, osc_b_t, dk, dbeta, dgain,
            steps, n, x_stride, (steps - 1) * n, (steps - 1) * x_stride,
            beta, program.decay, program.leak, program.floor, k_value,
            program.v_threshold, program.v_reset, program.v_init, sg.param, sg.c1, sg.c2,
            CHARGE=program.charge, KLIF=program.klif, HARD=program.hard_reset, SCALE=program.scale_reset,
            DETACH=program.detach_reset, SG=sg.kind, OSC=program.osc_target, OSC_TENSOR=osc_is_t,
            FAKE=program.fake_gradient and program.osc_target != OSC_NONE, OSC_B_TENSOR=osc_b_is_t,
            HAS_GAIN=gain is not None, LEARN_K=bool(want_k), LEARN_BETA=bool(learn_beta),
            LEARN_GAIN=bool(want_gain), NEED_VP=bool(learn_beta or program.charge == CHARGE_LINEAR),
            ACC=repeated, BLOCK=BLOCK, **_LAUNCH,
        )  # fmt: skip
        grad_k = dk.sum().to(k.dtype) if want_k else None
        grad_tau = dbeta.sum().to(inv_tau.dtype) if want_tau else None
        grad_gain = dgain.view(programs, steps).sum(0).to(gain.dtype) if want_gain else None
        return grad_x, grad_tau, grad_k, grad_gain, None, None, None, None


class TritonNoisyFunction(torch.autograd.Function):
    """Fused noisy IF on CUDA (or the Triton interpreter); the noise from the Philox counters of
    :mod:`spikeshield.kernels.philox` (``tl.philox``, the same Philox-4x32-10), bit for bit."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, keys: Tensor | None, program: NeuronProgram) -> Tensor:  # type: ignore[override]
        n = x.numel()
        keep_point = not program.expectation_gradient
        spikes = torch.empty_like(x)
        point = torch.empty(x.shape, dtype=torch.float32, device=x.device) if keep_point else spikes
        rows = 1 if keys is None else keys.numel()
        keys_arg = x if keys is None else keys.to(x.device)
        grid = (triton.cdiv(n, BLOCK),)
        _noisy_forward_kernel[grid](
            x, keys_arg, spikes, point, n, rows, x[0].numel() // rows,
            program.noise_scale, program.noise_offset if program.sample_noise else program.noise_mean,
            program.v_threshold,
            NOISY=keys is not None, GAUSSIAN=program.noise_kind == "gaussian", KEEP_POINT=keep_point,
            BLOCK=BLOCK, **_LAUNCH,
        )  # fmt: skip
        ctx.save_for_backward(point if keep_point else x)
        ctx.program = program
        return spikes

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_spikes: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        (src,) = ctx.saved_tensors
        program: NeuronProgram = ctx.program
        n = src.numel()
        grad_spikes = grad_spikes.contiguous()
        grad_x = torch.empty(src.shape, dtype=grad_spikes.dtype, device=src.device)
        sg = program.surrogate
        _noisy_backward_kernel[(triton.cdiv(n, BLOCK),)](
            src, grad_spikes, grad_x, n, program.noise_mean, program.v_threshold, sg.param, sg.c1, sg.c2,
            FROM_INPUT=program.expectation_gradient, SG=sg.kind, BLOCK=BLOCK, **_LAUNCH,
        )  # fmt: skip
        return grad_x, None, None


def run_neuron(x: Tensor, program: NeuronProgram, osc: Oscillations | None) -> Tensor:
    """Spikes of a stateful neuron through :class:`TritonNeuronFunction` (x: ``[T, ...]``)."""
    return apply_neuron(TritonNeuronFunction, x, program, osc)


def run_noisy(x: Tensor, keys: Tensor | None, program: NeuronProgram) -> Tensor:
    """Spikes of the noisy IF neuron (x: contiguous ``[T, ...]``; ``keys`` int64)."""
    return TritonNoisyFunction.apply(x, keys, program)
