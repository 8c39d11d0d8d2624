"""The CPU backend: a small C library (``csrc/*.c``) built on first use and called via ctypes.

``csrc/neurons.c`` holds the fused neurons, ``csrc/pool.c`` the 2×2 max-pool
(:mod:`spikeshield.kernels.pool`).

Why C through ctypes and not a PyTorch C++ extension: the kernels need no PyTorch headers (they
take raw float32 pointers), so one ``cc`` call builds them in about 3 s on a 2-core machine,
against 40+ s for a ``torch.utils.cpp_extension`` build; ctypes releases the GIL during the
call. The library is cached under ``spikeshield.io.cache_dir()/kernels`` keyed by a hash of
the source, the compiler flags, the compiler's version and the machine, so CI and new
environments build it once. Without a C compiler, if the build fails or if the cache cannot be
written, :func:`library` returns None, a warning says why once, and neurons use the reference
loop.

Set ``SPIKESHIELD_CC`` to choose the compiler (default ``$CC``, else ``cc``/``gcc``/``clang``).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from spikeshield.errors import warn
from spikeshield.io import CACHE_ENV, OutputError, atomic_write_bytes, cache_dir, ensure_dir
from spikeshield.kernels.program import NeuronProgram, Oscillations, apply_neuron

ABI_VERSION = 6
#: the C sources, compiled together into one library, and the header they share
SOURCES = ("neurons.c", "pool.c")
HEADERS = ("parallel.h",)
# -ffp-contract=off: no fused multiply-add, so every float op rounds as PyTorch's do (exact spikes);
# -fno-trapping-math only lets gcc if-convert (vectorise) loops with selects; it changes no result.
BASE_FLAGS = (
    "-O3",
    "-ffp-contract=off",
    "-fno-trapping-math",
    "-fno-math-errno",
    "-fPIC",
    "-shared",
    "-pthread",
)

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_failure: str | None = None
#: how the library was obtained in this process: {"path", "seconds", "cached"} (for reports)
BUILD_INFO: dict[str, Any] = {}


class _Config(ctypes.Structure):
    """Mirror of ``spk_cfg`` in csrc/neurons.c."""

    _fields_ = [
        ("T", ctypes.c_int64),
        ("N", ctypes.c_int64),
        ("charge", ctypes.c_int32),
        ("klif", ctypes.c_int32),
        ("hard_reset", ctypes.c_int32),
        ("scale_reset", ctypes.c_int32),
        ("detach_reset", ctypes.c_int32),
        ("surrogate", ctypes.c_int32),
        ("osc_target", ctypes.c_int32),
        ("fake_gradient", ctypes.c_int32),
        ("has_gain", ctypes.c_int32),
        ("nthreads", ctypes.c_int32),
        ("beta", ctypes.c_float),
        ("decay", ctypes.c_float),
        ("leak", ctypes.c_float),
        ("floor_", ctypes.c_float),
        ("k", ctypes.c_float),
        ("v_th", ctypes.c_float),
        ("v_reset", ctypes.c_float),
        ("v_init", ctypes.c_float),
        ("sg", ctypes.c_float),
        ("sg_c1", ctypes.c_float),
        ("sg_c2", ctypes.c_float),
        ("gain", ctypes.c_void_p),
        ("osc", ctypes.c_void_p),
        ("osc_b", ctypes.c_void_p),
        ("osc_t", ctypes.c_void_p),
        ("osc_b_t", ctypes.c_void_p),
        ("block", ctypes.c_int64),
        ("x_stride_t", ctypes.c_int64),
        ("accumulate_grad", ctypes.c_int32),
        ("pool_h", ctypes.c_int64),
        ("pool_w", ctypes.c_int64),
    ]


# ----------------------------------------------------------------------------- build and load
def _compiler() -> str | None:
    for candidate in (os.environ.get("SPIKESHIELD_CC"), os.environ.get("CC"), "cc", "gcc", "clang"):
        if candidate and shutil.which(candidate):
            return candidate
    return None


def _arch_flags() -> list[str]:
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64") and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        return ["-mavx2", "-mfma"]
    return []


def _sources() -> dict[str, bytes]:
    folder = resources.files("spikeshield.kernels").joinpath("csrc")
    return {name: folder.joinpath(name).read_bytes() for name in (*SOURCES, *HEADERS)}


def _cache_folder() -> Path:
    return cache_dir() / "kernels"


def build(force: bool = False) -> Path:
    """Compile the kernels into the cache (if not there yet) and return the library's path.

    Raises RuntimeError with the compiler's message if there is no compiler or it fails, and
    :class:`~spikeshield.io.OutputError` if the cache folder cannot be written.
    """
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set SPIKESHIELD_CC or CC, or install gcc)")
    flags = [*BASE_FLAGS, *_arch_flags()]
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"cannot run the C compiler {cc!r}: {exc}") from None
    sources = _sources()
    parts = [*sources.values(), " ".join(flags).encode(), version.encode(), platform.machine().encode()]
    key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
    target = _cache_folder() / f"spikeshield_kernels_{key}.so"
    if target.is_file() and not force:
        BUILD_INFO.update(path=str(target), seconds=0.0, cached=True)
        return target
    ensure_dir(target.parent)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="spikeshield-kernels-") as tmp:
        files = []
        for name, text in sources.items():
            files.append(Path(tmp) / name)
            files[-1].write_bytes(text)
        out = Path(tmp) / "spikeshield_kernels.so"
        try:
            proc = subprocess.run(
                [cc, *flags, "-o", str(out), *(str(f) for f in files if f.suffix == ".c")],
                capture_output=True,
                text=True,
                timeout=300,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise RuntimeError(f"the C compiler {cc!r} failed to run: {exc}") from None
        if proc.returncode != 0:
            first = (proc.stderr or proc.stdout).strip().splitlines()
            raise RuntimeError(f"{cc} failed: {first[0] if first else proc.returncode}")
        atomic_write_bytes(target, out.read_bytes())
    BUILD_INFO.update(path=str(target), seconds=time.perf_counter() - start, cached=False)
    return target


def _bind(lib: ctypes.CDLL) -> None:
    cfg = ctypes.POINTER(_Config)
    p = ctypes.c_void_p
    lib.spk_abi_version.restype = ctypes.c_int
    lib.spk_forward.argtypes = [cfg, p, p]
    lib.spk_forward.restype = ctypes.c_int
    lib.spk_backward.argtypes = [cfg, p, p, p, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, p]
    lib.spk_backward.restype = ctypes.c_int
    i64, f32, i32 = ctypes.c_int64, ctypes.c_float, ctypes.c_int32
    lib.spk_noisy_forward.argtypes = [i64, i64, i64, p, p, p, p, f32, f32, f32, i32, i32]
    lib.spk_noisy_forward.restype = ctypes.c_int
    lib.spk_noisy_backward.argtypes = [cfg, ctypes.c_int64, p, p, p, f32, f32, i32]
    lib.spk_noisy_backward.restype = ctypes.c_int
    sizes, scalars = [i64] * 5, [f32] * 4
    lib.spk_noisy_pool_forward.argtypes = [*sizes, p, p, p, p, p, *scalars, i32, i32, i32]
    lib.spk_noisy_pool_forward.restype = ctypes.c_int
    lib.spk_noisy_pool_backward.argtypes = [cfg, i64, i64, i64, p, p, p, p]
    lib.spk_noisy_pool_backward.restype = ctypes.c_int
    from spikeshield.kernels.pool import bind

    bind(lib)


def library() -> ctypes.CDLL | None:
    """The loaded kernel library, building it on first use; None (with one warning) if impossible.

    Whatever stops it — no compiler, a failed build, an unwritable cache (``SPIKESHIELD_CACHE``
    pointing at a file, a read-only home), a library that does not load — the neurons run the
    reference loop: the same spikes, more slowly. The warning names the reason and the caller's
    line; :func:`unavailable_reason` keeps the reason for reports.
    """
    global _library, _failure
    if _library is not None or _failure is not None:
        return _library
    with _lock:
        if _library is not None or _failure is not None:
            return _library
        try:
            lib = ctypes.CDLL(str(build()))
            _bind(lib)
            if lib.spk_abi_version() != ABI_VERSION:
                raise RuntimeError("stale kernel library (ABI version mismatch)")
            _library = lib
        except Exception as exc:  # an optional accelerator: any failure means the reference loop
            _failure = _reason(exc)
            warn(
                f"spikeshield: fused CPU neuron kernels unavailable ({_failure}); using the reference "
                "loop (same results, slower)",
                RuntimeWarning,
            )
    return _library


def _reason(exc: Exception) -> str:
    if isinstance(exc, OutputError):  # the cache folder cannot be written
        return f"the kernel cache is not writable: {exc}; set {CACHE_ENV} to a writable folder"
    if isinstance(exc, (RuntimeError, OSError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def unavailable_reason() -> str | None:
    """Why the CPU kernels could not be built/loaded in this process (None if they were or not tried)."""
    return _failure


# ----------------------------------------------------------------------------- autograd functions
def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _config(
    program: NeuronProgram,
    steps: int,
    repeated: bool,
    x: Tensor,
    beta: float,
    k: float,
    gain: Tensor | None,
    osc: Oscillations | None,
    pool: bool = False,
) -> tuple[_Config, list[Any]]:
    """The C config for one call; the second value keeps alive what the config points to.

    ``x`` is ``[T, ...]``, or one step ``[...]`` repeated over ``steps`` (read with stride 0; the
    backward then returns dL/dX summed over t). With ``pool`` the spikes come out 2×2
    max-pooled over x's last two dimensions.
    """
    keep: list[Any] = []
    cfg = _Config()
    cfg.T = steps
    cfg.N = x.numel() // (1 if repeated else steps)
    cfg.x_stride_t = 0 if repeated else cfg.N
    cfg.accumulate_grad = int(repeated)
    if pool:
        cfg.pool_h, cfg.pool_w = x.shape[-2], x.shape[-1]
    cfg.charge = program.charge
    cfg.klif = int(program.klif)
    cfg.hard_reset = int(program.hard_reset)
    cfg.scale_reset = int(program.scale_reset)
    cfg.detach_reset = int(program.detach_reset)
    cfg.surrogate = program.surrogate.kind
    cfg.osc_target = program.osc_target
    cfg.fake_gradient = int(program.fake_gradient)
    cfg.has_gain = int(gain is not None)
    cfg.nthreads = threads()
    cfg.block = int(os.environ.get("SPIKESHIELD_KERNEL_BLOCK", "0") or 0)
    cfg.beta = beta
    cfg.decay = program.decay
    cfg.leak = program.leak
    cfg.floor_ = program.floor
    cfg.k = k
    cfg.v_th = program.v_threshold
    cfg.v_reset = program.v_reset
    cfg.v_init = program.v_init
    cfg.sg = program.surrogate.param
    cfg.sg_c1 = program.surrogate.c1
    cfg.sg_c2 = program.surrogate.c2
    if gain is not None:
        keep.append(gain)
        cfg.gain = gain.data_ptr()
    if osc is not None:
        for name, values in (("osc", osc.forward), ("osc_b", osc.backward)):
            if values is None:
                continue
            if isinstance(values, Tensor):
                keep.append(values)
                setattr(cfg, f"{name}_t", values.data_ptr())
            else:
                array = (ctypes.c_float * len(values))(*values)
                keep.append(array)
                setattr(cfg, name, ctypes.addressof(array))
    return cfg, keep


def threads() -> int:
    """Threads the kernels may use: torch's intra-op count, or ``SPIKESHIELD_KERNEL_THREADS``.

    (Each thread gets at least 16 Ki elements; below that the kernels run on fewer.)
    """
    return int(os.environ.get("SPIKESHIELD_KERNEL_THREADS", "0") or 0) or torch.get_num_threads()


def _check(code: int, what: str) -> None:
    if code < 0:
        raise MemoryError(f"spikeshield CPU kernel {what}: out of memory for its scratch buffers")


class NeuronFunction(torch.autograd.Function):
    """Fused multi-step neuron on the CPU: spikes forward, hand-derived BPTT backward.

    Saves only its inputs (X and the small parameter tensors); the backward recomputes the
    membrane potentials block by block in cache. With ``repeated``, ``x`` is one step ``[...]``
    that every one of the ``steps`` steps sees (direct encoding's ``y.unsqueeze(0).expand(T, ...)``):
    it is read in place, and its gradient is the sum over t, accumulated in the kernel. With
    ``pool`` the output is ``F.max_pool2d`` of the spikes over the last two dimensions (kernel 2,
    floor mode), computed while the spikes are in cache, and the backward takes the pooled
    gradient (tie rule and dropped rows as PyTorch's, see csrc/neurons.c).
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
        pool: bool = False,
    ) -> Tensor:
        lib = library()
        assert lib is not None
        beta = float(inv_tau) if inv_tau is not None else program.beta
        k_value = float(k) if k is not None else 1.0
        gain_values = gain.detach().contiguous() if gain is not None else None
        cfg, keep = _config(program, steps, repeated, x, beta, k_value, gain_values, osc, pool)
        shape = (steps, *x.shape) if repeated else tuple(x.shape)
        if pool:
            shape = (*shape[:-2], shape[-2] // 2, shape[-1] // 2)
        spikes = torch.empty(shape, dtype=x.dtype, device=x.device)
        _check(lib.spk_forward(ctypes.byref(cfg), x.data_ptr(), spikes.data_ptr()), "forward")
        del keep
        ctx.save_for_backward(x, inv_tau, k, gain)
        ctx.program, ctx.osc, ctx.steps, ctx.repeated, ctx.pool = program, osc, steps, repeated, pool
        return spikes

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_spikes: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, inv_tau, k, gain = ctx.saved_tensors
        program: NeuronProgram = ctx.program
        steps: int = ctx.steps
        lib = library()
        assert lib is not None
        beta = float(inv_tau) if inv_tau is not None else program.beta
        k_value = float(k) if k is not None else 1.0
        gain_values = gain.detach().contiguous() if gain is not None else None
        cfg, keep = _config(program, steps, ctx.repeated, x, beta, k_value, gain_values, ctx.osc, ctx.pool)
        grad_spikes = grad_spikes.contiguous()
        grad_x = torch.empty_like(x)
        want_tau, want_k, want_gain = ctx.needs_input_grad[1:4]
        params = (ctypes.c_double * (steps + 2))()
        code = lib.spk_backward(
            ctypes.byref(cfg),
            x.data_ptr(),
            grad_spikes.data_ptr(),
            grad_x.data_ptr(),
            int(want_k),
            int(want_tau),
            int(want_gain),
            ctypes.addressof(params),
        )
        _check(code, "backward")
        del keep
        grad_k = torch.tensor(params[0], dtype=x.dtype) if want_k else None
        grad_tau = torch.tensor(params[1], dtype=x.dtype) if want_tau else None
        grad_gain = torch.tensor(params[2 : 2 + steps], dtype=x.dtype) if want_gain else None
        return grad_x, grad_tau, grad_k, grad_gain, None, None, None, None, None


class NoisyFunction(torch.autograd.Function):
    """Fused noisy IF (stateless): ``S = Θ(X + ξ − V_th)``, ξ computed in the kernel from the Philox
    counters of :mod:`spikeshield.kernels.philox` under ``keys`` (None: ξ = E[ξ])."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, keys: Tensor | None, program: NeuronProgram) -> Tensor:  # type: ignore[override]
        lib = library()
        assert lib is not None
        keep_point = not program.expectation_gradient
        point = torch.empty_like(x) if keep_point else None
        spikes = torch.empty_like(x)
        rows = 1 if keys is None else keys.numel()
        lib.spk_noisy_forward(
            x.shape[0],
            rows,
            x[0].numel() // rows,
            _ptr(keys),
            x.data_ptr(),
            _ptr(point),
            spikes.data_ptr(),
            program.noise_scale,
            program.noise_offset if program.sample_noise else program.noise_mean,
            program.v_threshold,
            int(program.noise_kind == "gaussian"),
            threads(),
        )
        # the backward needs X (expectation gradient) or the noisy point (X + ξ) − V_th
        ctx.save_for_backward(point if keep_point else x)
        ctx.program = program
        return spikes

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_spikes: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        (src,) = ctx.saved_tensors
        program: NeuronProgram = ctx.program
        lib = library()
        assert lib is not None
        cfg, _ = _config(program, 1, False, src.reshape(1, -1), 0.0, 1.0, None, None)
        grad_spikes = grad_spikes.contiguous()
        grad_x = torch.empty_like(src)
        lib.spk_noisy_backward(
            ctypes.byref(cfg),
            src.numel(),
            src.data_ptr(),
            grad_spikes.data_ptr(),
            grad_x.data_ptr(),
            program.noise_mean,
            program.v_threshold,
            int(program.expectation_gradient),
        )
        return grad_x, None, None


class NoisyPoolFunction(torch.autograd.Function):
    """Fused noisy IF and 2×2 max-pool: ``F.max_pool2d(Θ(X + ξ − V_th), 2)`` over x's last two
    dimensions (kernel 2, stride 2, floor mode), ξ exactly as :class:`NoisyFunction` computes it.

    Only the pooled spikes are written. For the backward the kernel keeps, per output, the
    window position of the neuron that takes the window's gradient (its first spike in row-major
    order, else the top-left neuron: PyTorch's max-pool tie rule) and that neuron's surrogate
    point; dL/dX is dL/dP·g(point) there and 0 at the other neurons (and in a row or column that
    floor mode drops), as through PyTorch's pool after the neuron.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, keys: Tensor | None, program: NeuronProgram) -> Tensor:  # type: ignore[override]
        lib = library()
        assert lib is not None
        steps, (h, w) = x.shape[0], x.shape[-2:]
        planes = x[0].numel() // (h * w)
        pooled = x.new_empty((*x.shape[:-2], h // 2, w // 2))
        want_grad = ctx.needs_input_grad[0]
        arg = torch.empty(pooled.shape, dtype=torch.uint8) if want_grad else None
        point = torch.empty_like(pooled) if want_grad else None
        code = lib.spk_noisy_pool_forward(
            steps,
            planes,
            h,
            w,
            1 if keys is None else keys.numel(),
            _ptr(keys),
            x.data_ptr(),
            pooled.data_ptr(),
            _ptr(arg),
            _ptr(point),
            program.noise_scale,
            program.noise_offset if program.sample_noise else program.noise_mean,
            program.v_threshold,
            program.noise_mean,
            int(program.noise_kind == "gaussian"),
            int(program.expectation_gradient),
            threads(),
        )
        _check(code, "forward")
        ctx.save_for_backward(arg, point)
        ctx.program, ctx.input_shape = program, x.shape
        return pooled

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_pooled: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        arg, point = ctx.saved_tensors
        program: NeuronProgram = ctx.program
        lib = library()
        assert lib is not None
        shape = ctx.input_shape
        cfg, _ = _config(program, 1, False, point.reshape(1, -1), 0.0, 1.0, None, None)
        grad_pooled = grad_pooled.contiguous()
        grad_x = grad_pooled.new_empty(shape)
        units = shape.numel() // (shape[-2] * shape[-1]) * (shape[-2] // 2)
        code = lib.spk_noisy_pool_backward(
            ctypes.byref(cfg),
            units,
            shape[-2],
            shape[-1],
            arg.data_ptr(),
            point.data_ptr(),
            grad_pooled.data_ptr(),
            grad_x.data_ptr(),
        )
        _check(code, "backward")
        return grad_x, None, None


def run_neuron(x: Tensor, program: NeuronProgram, osc: Oscillations | None, pool: bool = False) -> Tensor:
    """Spikes of a stateful neuron through :class:`NeuronFunction` (x: float32 ``[T, ...]``);
    with ``pool`` (no oscillation; x ``[T, ..., H, W]``, H, W >= 2) max-pooled 2×2 as
    ``F.max_pool2d(spikes, 2)`` would, gradients included."""
    return apply_neuron(NeuronFunction, x, program, osc, pool)


def run_noisy(x: Tensor, keys: Tensor | None, program: NeuronProgram, pool: bool = False) -> Tensor:
    """Spikes of the noisy IF neuron (x: contiguous float32 ``[T, ...]``; ``keys`` int64 on the CPU);
    with ``pool`` (x ``[T, ..., H, W]``, H, W >= 2) max-pooled 2×2 as ``F.max_pool2d(spikes, 2)``
    would, gradients included (:class:`NoisyPoolFunction`)."""
    if pool:
        return NoisyPoolFunction.apply(x, keys, program)
    return NoisyFunction.apply(x, keys, program)


__all__ = [
    "BUILD_INFO",
    "NeuronFunction",
    "NoisyFunction",
    "NoisyPoolFunction",
    "build",
    "library",
    "run_neuron",
    "run_noisy",
]
