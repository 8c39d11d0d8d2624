"""One spiking-neuron layer, forward and forward+backward: spikeshield's fused kernels vs the rest.

Times, in ONE process and interleaved (every repeat runs every implementation once, so a noisy
machine slows them alike), for a ``[T, B, N]`` input:

* ``spikeshield-fused``      every registered neuron through its fused kernel (C on CPU, Triton on CUDA)
* ``spikeshield-reference``  the same neurons' reference PyTorch loop (``kernels.reference_only()``)
* ``torch-compile``          ``torch.compile`` of that reference loop (compiling takes ~1 min per
                             neuron on a 2-core CPU; ``--compile-neurons`` says which)
* ``spikingjelly``           SpikingJelly 2.0 ``LIFNode`` (multi-step; it picks its own fastest
                             path, Triton on CUDA) and ``KLIFNode``
* ``snntorch``               snnTorch 1.0 ``Leaky`` stepped over T (recorded as neuron ``lif``)

All LIFs use τ = 2 (β = 0.5), V_th = 1, hard reset to 0, sigmoid surrogate α = 4. Reported per
row: median forward ms (input requiring grad, graph recorded), median forward+backward ms, peak
memory the pass allocates on top of its input and upstream gradient (CPU: PyTorch allocator
events from the profiler; CUDA: ``max_memory_allocated``), the effective bandwidth against the
bytes a fused kernel must move (forward reads X, writes S; backward reads dL/dS and X, writes
dL/dX: 5 passes over T·B·N elements), and that against a device copy of the same tensor measured
in the same run. Peers are optional::

    pip install --no-deps spikingjelly==2.0.0 snntorch==1.0.0 loguru

    python benchmarks/neuron_kernels.py --quick                          # < 1 min on a 2-core CPU
    python benchmarks/neuron_kernels.py --json results/kernels/cpu.json  # T=8, B=32, N=32768
    python benchmarks/neuron_kernels.py --device cuda --json results/kernels/cuda.json  # N=128·32·32

``--json FILE`` writes the list of records ``{"impl", "neuron", "T", "B", "N", "fwd_ms",
"fwd_bwd_ms", "peak_mb"}``; the run's settings, the copy bandwidth and compile times go to
``FILE`` with ``.meta.json`` in place of ``.json``.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import spikeshield  # noqa: F401  (first: idle OpenMP threads then sleep; see spikeshield.runtime)

# isort: split
import torch
from torch import Tensor

from spikeshield import kernels
from spikeshield.neurons import NEURONS, build_neuron
from spikeshield.runtime import configure_threads, positive_count

IMPLS = ("spikeshield-fused", "spikeshield-reference", "torch-compile", "spikingjelly", "snntorch")
FULL_N = {"cpu": 32768, "cuda": 128 * 32 * 32}
QUICK_N = {"cpu": 4096, "cuda": 128 * 32 * 32}
PASSES_FWD, PASSES_FWD_BWD = 2, 5


@dataclass
class Case:
    impl: str
    neuron: str
    run: Callable[[Tensor], Tensor]
    fwd: list[float] = field(default_factory=list)
    fwd_bwd: list[float] = field(default_factory=list)
    peak_mb: float = math.nan
    failed: str | None = None


# ----------------------------------------------------------------------------- implementations
def spikeshield_neuron(name: str, steps: int, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    options: dict[str, Any] = {"time_steps": steps} if name == "dlif" else {}
    if name in ("lif", "plif", "klif", "oscillating-lif"):
        options.update(surrogate="sigmoid:4")
    return build_neuron(name, **options).to(device=device, dtype=dtype)


def fused_case(name: str, steps: int, device: torch.device, dtype: torch.dtype) -> Case:
    neuron = spikeshield_neuron(name, steps, device, dtype)
    return Case("spikeshield-fused", name, neuron)


def reference_case(name: str, steps: int, device: torch.device, dtype: torch.dtype) -> Case:
    neuron = spikeshield_neuron(name, steps, device, dtype)

    def run(x: Tensor) -> Tensor:
        with kernels.reference_only():
            return neuron(x)

    return Case("spikeshield-reference", name, run)


def compile_case(name: str, steps: int, device: torch.device, dtype: torch.dtype) -> Case:
    neuron = spikeshield_neuron(name, steps, device, dtype)
    compiled = torch.compile(lambda x: neuron.run(x).spikes, dynamic=False)
    return Case("torch-compile", name, compiled)


def spikingjelly_cases(device: torch.device, dtype: torch.dtype) -> list[Case]:
    from spikingjelly.activation_based import functional, neuron, surrogate

    cases = []
    for name, node in (
        ("lif", neuron.LIFNode(tau=2.0, surrogate_function=surrogate.Sigmoid(alpha=4.0), step_mode="m")),
        ("klif", neuron.KLIFNode(tau=2.0, surrogate_function=surrogate.Sigmoid(alpha=4.0), step_mode="m")),
    ):
        node = node.to(device=device, dtype=dtype)

        def run(x: Tensor, node: torch.nn.Module = node) -> Tensor:
            functional.reset_net(node)
            return node(x)

        cases.append(Case("spikingjelly", name, run))
    return cases


def snntorch_case(device: torch.device, dtype: torch.dtype) -> Case:
    import snntorch

    leaky = snntorch.Leaky(beta=0.5, threshold=1.0, reset_mechanism="zero").to(device=device, dtype=dtype)

    def run(x: Tensor) -> Tensor:
        mem = torch.zeros_like(x[0])
        spikes = []
        for x_t in x.unbind(0):
            spk, mem = leaky(x_t, mem)
            spikes.append(spk)
        return torch.stack(spikes)

    return Case("snntorch", "lif", run)


# ----------------------------------------------------------------------------- measurement
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_call(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds for one call (CUDA: event-timed, synchronised)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


def forward_only(case: Case, x: Tensor) -> Callable[[], None]:
    def call() -> None:
        case.run(x)

    return call


def forward_backward(case: Case, x: Tensor, upstream: Tensor) -> Callable[[], None]:
    def call() -> None:
        x.grad = None
        case.run(x).backward(upstream)

    return call


def peak_memory_mb(call: Callable[[], None], device: torch.device) -> float:
    """Peak bytes allocated during ``call`` on top of what was allocated before it, in MiB.

    CPU: the profiler reports every allocation and free of PyTorch's CPU allocator in order;
    the peak is the largest running sum.
    """
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        call()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),  # type: ignore[union-attr]
        key=lambda e: e.start_ns(),
    )
    current = peak = 0
    for event in events:
        current += event.nbytes()
        peak = max(peak, current)
    return peak / 2**20


def copy_seconds(x: Tensor, repeats: int, device: torch.device) -> float:
    dst = torch.empty_like(x)
    src = x.detach()
    for _ in range(2):
        dst.copy_(src)
    return statistics.median(time_call(lambda: dst.copy_(src), device) for _ in range(max(repeats, 5)))


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    parser.add_argument(
        "--quick", action="store_true", help="small N and few repeats (under a minute on CPU)"
    )
    parser.add_argument("--time-steps", "-T", type=int, default=8)
    parser.add_argument("--batch", "-B", type=int, default=32)
    parser.add_argument(
        "--neurons-per-sample", "-N", type=int, default=None, help="default 32768 CPU, 131072 CUDA"
    )
    parser.add_argument(
        "--neurons", nargs="+", default=None, help="spikeshield neurons (default: all registered)"
    )
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=None)
    parser.add_argument(
        "--compile-neurons",
        nargs="+",
        default=None,
        help="neurons to torch.compile ('all'; default lif klif, none with --quick)",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed repeats (default 15; 5 with --quick)"
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--threads", type=positive_count, default=None, help="CPU threads (default: spikeshield's policy)"
    )
    parser.add_argument("--json", default=None, help="write the records to this file")
    parser.add_argument(
        "--no-tune-allocator", action="store_true", help="leave glibc's allocator at its defaults"
    )
    return parser.parse_args(argv)


def build_cases(
    args: argparse.Namespace, device: torch.device, dtype: torch.dtype
) -> tuple[list[Case], dict]:
    impls = args.impls or [i for i in IMPLS if not (args.quick and i == "torch-compile")]
    neurons = args.neurons or NEURONS.names()
    compile_neurons = args.compile_neurons or ([] if args.quick else ["lif", "klif"])
    if "all" in compile_neurons:
        compile_neurons = neurons
    notes: dict[str, Any] = {}
    cases: list[Case] = []
    steps = args.time_steps
    if "spikeshield-fused" in impls:
        probe = torch.zeros(2, 2, device=device, dtype=dtype)
        backend = kernels.backend_for(probe)
        if backend == "cpu":
            from spikeshield.kernels import cpu

            start = time.perf_counter()
            if cpu.library() is None:
                backend = None
            notes["cpu_kernel_build"] = {**cpu.BUILD_INFO, "load_seconds": time.perf_counter() - start}
        notes["fused_backend"] = backend
        if backend is None:
            print("spikeshield-fused: no fused backend for this device/dtype; left out", flush=True)
        else:
            cases += [fused_case(n, steps, device, dtype) for n in neurons]
    if "spikeshield-reference" in impls:
        cases += [reference_case(n, steps, device, dtype) for n in neurons]
    if "torch-compile" in impls:
        cases += [compile_case(n, steps, device, dtype) for n in neurons if n in compile_neurons]
    if "spikingjelly" in impls:
        try:
            cases += spikingjelly_cases(device, dtype)
        except ImportError as exc:
            print(f"spikingjelly not installed ({exc}); left out", flush=True)
    if "snntorch" in impls:
        try:
            cases.append(snntorch_case(device, dtype))
        except ImportError as exc:
            print(f"snntorch not installed ({exc}); left out", flush=True)
    return cases, notes


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.no_tune_allocator:
        from spikeshield.runtime import tune_allocator

        tune_allocator()  # one process for all implementations: applies to them alike
    configure_threads(args.threads)  # every implementation in this process alike
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device available")
    dtype = getattr(torch, args.dtype)
    steps, batch = args.time_steps, args.batch
    width = args.neurons_per_sample or (QUICK_N if args.quick else FULL_N)[device.type]
    repeats = args.repeats or (5 if args.quick else 15)
    warmup = 1 if args.quick and args.warmup == 2 else args.warmup
    started = time.perf_counter()

    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(steps, batch, width, generator=gen) * 1.2 + 0.5).to(device=device, dtype=dtype)
    x.requires_grad_(True)
    upstream = torch.randn(steps, batch, width, generator=gen).to(device=device, dtype=dtype)
    numel, size = x.numel(), x.element_size()
    print(
        f"[T={steps}, B={batch}, N={width}] {args.dtype} on {device} "
        f"({torch.get_num_threads()} threads, torch {torch.__version__}); "
        f"{repeats} repeats, medians",
        flush=True,
    )

    cases, notes = build_cases(args, device, dtype)
    compile_seconds: dict[str, float] = {}
    for case in cases:  # warm up (compiles torch.compile cases; builds nothing else)
        begin = time.perf_counter()
        try:
            for _ in range(warmup):
                forward_backward(case, x, upstream)()
            synchronize(device)
        except Exception as exc:  # a peer that cannot run this dtype/device: report, go on
            case.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            print(f"{case.impl} {case.neuron}: failed ({case.failed}); left out", flush=True)
        if case.impl == "torch-compile":
            compile_seconds[case.neuron] = time.perf_counter() - begin
    cases = [c for c in cases if c.failed is None]
    if compile_seconds:
        print(
            "torch.compile warm-up (compile) seconds: "
            + ", ".join(f"{k} {v:.0f}" for k, v in compile_seconds.items())
        )

    copy_times = []
    for _ in range(repeats):
        copy_times.append(copy_seconds(x, 3, device))
        for case in cases:
            case.fwd.append(time_call(forward_only(case, x), device))
            case.fwd_bwd.append(time_call(forward_backward(case, x, upstream), device))
    for case in cases:
        x.grad = None  # freed outside the measurement, not counted as a negative allocation in it
        case.peak_mb = peak_memory_mb(forward_backward(case, x, upstream), device)
    copy_s = statistics.median(copy_times)
    copy_gbps = 2 * numel * size / copy_s / 1e9

    records = []
    for case in cases:
        records.append(
            {
                "impl": case.impl,
                "neuron": case.neuron,
                "T": steps,
                "B": batch,
                "N": width,
                "fwd_ms": statistics.median(case.fwd) * 1e3,
                "fwd_bwd_ms": statistics.median(case.fwd_bwd) * 1e3,
                "peak_mb": case.peak_mb,
            }
        )
    report(records, copy_s, copy_gbps, numel * size)

    if args.json:
        from spikeshield.io import atomic_write_json

        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, records)
        meta = {
            "command": " ".join(["python", *sys.argv]),
            "device": str(device),
            "device_name": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor(),
            "machine": platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "dtype": args.dtype,
            "repeats": repeats,
            "copy_ms": copy_s * 1e3,
            "copy_gbps": copy_gbps,
            "floor_fwd_bwd_ms": PASSES_FWD_BWD * numel * size / (copy_gbps * 1e9) * 1e3,
            "torch_compile_seconds": compile_seconds,
            "allocator_tuned": not args.no_tune_allocator,
            "wall_seconds": time.perf_counter() - started,
            **notes,
        }
        atomic_write_json(path.with_name(path.name.removesuffix(".json") + ".meta.json"), meta)
    print(f"total {time.perf_counter() - started:.0f} s", flush=True)


def report(records: list[dict], copy_s: float, copy_gbps: float, tensor_bytes: int) -> None:
    floor_fb = PASSES_FWD_BWD * tensor_bytes / (copy_gbps * 1e9) * 1e3
    floor_f = PASSES_FWD * tensor_bytes / (copy_gbps * 1e9) * 1e3
    print(
        f"device copy of the [T,B,N] tensor: {copy_s * 1e3:.2f} ms = {copy_gbps:.1f} GB/s (read+write); "
        f"bandwidth floor: forward {floor_f:.2f} ms (2 passes), forward+backward {floor_fb:.2f} ms (5 passes)"
    )
    sj = next((r for r in records if r["impl"] == "spikingjelly" and r["neuron"] == "lif"), None)
    header = f"{'impl':22s} {'neuron':16s} {'fwd ms':>8s} {'fwd+bwd ms':>10s} {'peak MB':>8s} "
    header += f"{'GB/s':>6s} {'x floor':>7s} {'vs SJ LIF':>9s} {'vs reference':>12s}"
    print(header)
    by_key = {(r["impl"], r["neuron"]): r for r in records}
    for r in records:
        gbps = PASSES_FWD_BWD * tensor_bytes / (r["fwd_bwd_ms"] / 1e3) / 1e9
        vs_sj = f"{sj['fwd_bwd_ms'] / r['fwd_bwd_ms']:8.2f}x" if sj else "        -"
        ref = by_key.get(("spikeshield-reference", r["neuron"]))
        vs_ref = (
            f"{ref['fwd_bwd_ms'] / r['fwd_bwd_ms']:11.2f}x"
            if ref and r["impl"] != "snntorch"
            else " " * 11 + "-"
        )
        print(
            f"{r['impl']:22s} {r['neuron']:16s} {r['fwd_ms']:8.2f} {r['fwd_bwd_ms']:10.2f} "
            f"{r['peak_mb']:8.1f} {gbps:6.1f} {r['fwd_bwd_ms'] / floor_fb:7.2f} {vs_sj} {vs_ref}"
        )
    print("(vs SJ LIF / vs reference: that row's forward+backward speed-up; x floor: time / bandwidth floor)")


if __name__ == "__main__":
    main()
