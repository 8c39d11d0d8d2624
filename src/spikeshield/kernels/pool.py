"""2×2 max-pooling (stride 2) on the CPU through the C library (``csrc/pool.c``).

``max_pool2d(x)`` equals ``torch.nn.functional.max_pool2d(x, 2)`` in values *and* gradients,
ties included: the gradient of each window goes to its first maximum in row-major order (its
last NaN, if any), as in PyTorch's CPU and CUDA kernels. That matters here because the input is
usually binary spikes, where pooling is an OR and ties are the rule (a window without spikes
sends its gradient to the top-left element).

Why a kernel of our own (see ``docs/performance.md``): in a spiking CNN's training step on the
CPU, PyTorch's max-pool took about half of the time — its forward writes an int64 index per
output, its backward zero-fills a fresh full-size gradient buffer (page faults) before
scattering into it. Here the forward keeps one byte per output (the window position) and the
backward writes every gradient element exactly once.

It runs for CPU float32 inputs ``[..., H, W]`` (contiguous, H and W >= 2) while the fused
kernels are enabled (not under :func:`spikeshield.kernels.reference_only`,
``SPIKESHIELD_KERNELS=reference``, ``torch.compile`` tracing or ``torch.func`` transforms) and
the C library is available; anything else calls PyTorch. Its backward is not itself
differentiable (no double backward through it; use ``reference_only()`` for that).
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from spikeshield import kernels
from spikeshield.kernels import cpu


class _PoolConfig(ctypes.Structure):
    """Mirror of ``spk_pool_cfg`` in csrc/pool.c."""

    _fields_ = [
        ("P", ctypes.c_int64),
        ("H", ctypes.c_int64),
        ("W", ctypes.c_int64),
        ("nthreads", ctypes.c_int32),
    ]


def bind(lib: ctypes.CDLL) -> None:
    """Declare the pooling entry points of the loaded library (called by ``cpu.library``)."""
    cfg, p = ctypes.POINTER(_PoolConfig), ctypes.c_void_p
    lib.spk_maxpool2_forward.argtypes = [cfg, p, p, p]
    lib.spk_maxpool2_forward.restype = ctypes.c_int
    lib.spk_maxpool2_backward.argtypes = [cfg, p, p, p]
    lib.spk_maxpool2_backward.restype = ctypes.c_int


def _config(shape: torch.Size) -> _PoolConfig:
    h, w = shape[-2], shape[-1]
    return _PoolConfig(P=shape.numel() // (h * w), H=h, W=w, nthreads=cpu.threads())


class MaxPool2Function(torch.autograd.Function):
    """``F.max_pool2d(x, 2)`` forward; backward routes dL/dy to each window's recorded maximum."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        lib = cpu.library()
        assert lib is not None
        cfg = _config(x.shape)
        y = x.new_empty((*x.shape[:-2], x.shape[-2] // 2, x.shape[-1] // 2))
        arg = torch.empty(y.shape, dtype=torch.uint8) if ctx.needs_input_grad[0] else None
        lib.spk_maxpool2_forward(
            ctypes.byref(cfg), x.data_ptr(), y.data_ptr(), None if arg is None else arg.data_ptr()
        )
        ctx.save_for_backward(arg)
        ctx.input_shape = x.shape
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_y: Tensor) -> Tensor:  # type: ignore[override]
        (arg,) = ctx.saved_tensors
        lib = cpu.library()
        assert lib is not None
        grad_y = grad_y.contiguous()
        grad_x = grad_y.new_empty(ctx.input_shape)
        cfg = _config(ctx.input_shape)
        lib.spk_maxpool2_backward(ctypes.byref(cfg), arg.data_ptr(), grad_y.data_ptr(), grad_x.data_ptr())
        return grad_x


def applies(x: Tensor) -> bool:
    """True when :func:`max_pool2d` runs the C kernel for ``x`` (else it calls PyTorch)."""
    if torch.compiler.is_compiling() or not kernels.enabled() or kernels._transforms_active():
        return False
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() not in (3, 4):
        return False
    if min(x.shape[-2:]) < 2 or x.numel() == 0 or not x.is_contiguous():
        return False
    return cpu.library() is not None


def max_pool2d(x: Tensor) -> Tensor:
    """``F.max_pool2d(x, 2)`` (kernel 2, stride 2, no padding, floor mode) for ``x`` of shape
    ``[N, C, H, W]`` or ``[C, H, W]``; output ``[..., H // 2, W // 2]``; same values and gradients."""
    return MaxPool2Function.apply(x) if applies(x) else F.max_pool2d(x, 2)


__all__ = ["MaxPool2Function", "applies", "max_pool2d"]
