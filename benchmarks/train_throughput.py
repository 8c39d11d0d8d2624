"""Training throughput (images/s) of spikeshield vs SpikingJelly on the same net, in one run.

The net is the MNIST conv32-conv32-fc SNN: conv3×3(32)-BN-LIF-maxpool ×2, then a linear
readout of the mean over T (τ = 2, hard reset, sigmoid surrogate α = 4, direct encoding,
T = 4, batch 128, Adam). Both implementations see the same batches from the same in-memory
loader, so only the SNN library differs. SpikingJelly is an optional benchmark dependency::

    pip install --no-deps spikingjelly==2.0.0 snntorch==1.0.0 loguru

    python benchmarks/train_throughput.py --data-root ../shared/data            # one full epoch each
    python benchmarks/train_throughput.py --data-root ../shared/data --steps 60 --json out.json

Note: under direct encoding spikeshield computes the first conv + BN once per image and repeats
its output over T (identical result, tested); SpikingJelly's standard multi-step net runs it on
all T copies. That is part of what is being compared.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable

import spikeshield  # noqa: F401  (first: idle OpenMP threads then sleep; see spikeshield.runtime)

# isort: split
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeshield.data import load_dataset
from spikeshield.io import atomic_write_json
from spikeshield.models import build_model
from spikeshield.runtime import configure_threads, positive_count, thread_settings

MEAN, STD = 0.1307, 0.3081


def spikingjelly_net(time_steps: int) -> tuple[nn.Module, Callable[[Tensor], Tensor], Callable[[], None]]:
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    def lif() -> nn.Module:
        return neuron.LIFNode(tau=2.0, surrogate_function=surrogate.Sigmoid(alpha=4.0), step_mode="m")

    net = nn.Sequential(
        layer.Conv2d(1, 32, 3, padding=1, bias=False),
        layer.BatchNorm2d(32),
        lif(),
        layer.MaxPool2d(2),
        layer.Conv2d(32, 32, 3, padding=1, bias=False),
        layer.BatchNorm2d(32),
        lif(),
        layer.MaxPool2d(2),
        layer.Flatten(),
        layer.Linear(32 * 7 * 7, 10),
    )
    functional.set_step_mode(net, "m")

    def forward(x: Tensor) -> Tensor:
        x = (x - MEAN) / STD
        return net(x.unsqueeze(0).repeat(time_steps, 1, 1, 1, 1)).mean(0)

    return net, forward, lambda: functional.reset_net(net)


def spikeshield_net(time_steps: int) -> tuple[nn.Module, Callable[[Tensor], Tensor], Callable[[], None]]:
    model = build_model(
        "cnn",
        neuron="lif",
        neuron_options={"tau": 2.0, "surrogate": "sigmoid:4"},
        input_shape=(1, 28, 28),
        time_steps=time_steps,
        normalize=((MEAN,), (STD,)),
    )
    return model, model, lambda: None


def spikeshield_reference_net(
    time_steps: int,
) -> tuple[nn.Module, Callable[[Tensor], Tensor], Callable[[], None]]:
    """The same spikeshield net with its neurons forced onto the reference PyTorch loop."""
    from spikeshield.kernels import reference_only

    model, _, reset = spikeshield_net(time_steps)

    def forward(x: Tensor) -> Tensor:
        with reference_only():
            return model(x)

    return model, forward, reset


def spikeshield_torch_pool_net(
    time_steps: int,
) -> tuple[nn.Module, Callable[[Tensor], Tensor], Callable[[], None]]:
    """The same net with fused neurons but PyTorch's max-pool after them (as before issue 12):
    the body as a plain nn.Sequential (no neuron+pool fusion) and every pool an nn.MaxPool2d."""
    model, forward, reset = spikeshield_net(time_steps)
    for module in model.body.modules():
        for key, child in list(module.named_children()):
            if isinstance(child, nn.MaxPool2d):
                setattr(module, key, nn.MaxPool2d(child.kernel_size, child.stride))
    model.body = nn.Sequential(*model.body)
    return model, forward, reset


def measure(name: str, make, args, train_set, device: torch.device) -> dict:
    torch.manual_seed(0)
    net, forward, reset = make(args.time_steps)
    net.to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    batches = train_set.batches(args.batch_size, shuffle=True, generator=gen, device=device)
    seen = correct = 0
    start = cpu_start = 0.0
    for step, (x, y) in enumerate(batches):
        if step == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, cpu_start = time.perf_counter(), time.process_time()
            seen = correct = 0
        if args.steps and step >= args.warmup + args.steps:
            break
        out = forward(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        reset()
        seen += len(y)
        correct += int((out.argmax(1) == y).sum())
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    record = {
        "impl": name,
        "images": seen,
        "seconds": seconds,
        "images_per_second": seen / seconds,
        # CPU time of this process (all threads): less disturbed than wall time on a loaded machine
        "cpu_seconds": cpu_seconds,
        "images_per_cpu_second": seen / cpu_seconds,
        "train_accuracy": correct / seen,
    }
    print(
        f"{name:22s} {seen:6d} images in {seconds:7.1f}s: {record['images_per_second']:7.1f} img/s "
        f"({record['images_per_cpu_second']:7.1f} per CPU-second; train acc {record['train_accuracy']:.3f})",
        flush=True,
    )
    return record


def profile_steps(name: str, make, args, train_set, device: torch.device) -> str:
    """Where one implementation's training step spends its time: PyTorch profiler over a few steps."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    net, forward, reset = make(args.time_steps)
    net.to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    batches = iter(train_set.batches(args.batch_size, shuffle=True, generator=gen, device=device))

    def step() -> None:
        x, y = next(batches)
        loss = F.cross_entropy(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        reset()

    for _ in range(args.warmup):
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(args.profile):
            step()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=18)
    return f"== {name}: {args.profile} training steps, sorted by self time\n{table}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", default=None, help="folder holding MNIST (default: $SPIKESHIELD_DATA)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--time-steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--steps", type=int, default=0, help="timed steps per implementation (default 0: the whole epoch)"
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument(
        "--impls",
        nargs="+",
        default=["spikingjelly", "spikeshield"],
        choices=("spikingjelly", "spikeshield", "spikeshield-torch-pool", "spikeshield-reference"),
        help=(
            "spikeshield runs its fused neuron kernels with the pooling fused in; spikeshield-torch-pool "
            "the fused neurons with PyTorch's max-pool; spikeshield-reference the reference loop"
        ),
    )
    parser.add_argument(
        "--threads", type=positive_count, default=None, help="CPU threads (default: spikeshield's policy)"
    )
    parser.add_argument("--json", default=None, help="write the records to this file")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="STEPS",
        help="instead of timing, profile STEPS training steps of each impl and print where the time goes",
    )
    parser.add_argument(
        "--no-tune-allocator", action="store_true", help="leave glibc's allocator at its defaults"
    )
    args = parser.parse_args()
    if not args.no_tune_allocator:
        from spikeshield.runtime import tune_allocator

        tune_allocator()  # applies to both implementations alike

    configure_threads(args.threads)  # every implementation in this process alike
    device = torch.device(args.device)
    train_set = load_dataset("mnist", "train", args.data_root)
    makers = {
        "spikingjelly": spikingjelly_net,
        "spikeshield": spikeshield_net,
        "spikeshield-torch-pool": spikeshield_torch_pool_net,
        "spikeshield-reference": spikeshield_reference_net,
    }
    print(
        f"MNIST cnn (conv32-conv32-fc), T={args.time_steps}, batch {args.batch_size}, Adam; device {device}, "
        f"{torch.get_num_threads()} threads (idle threads: {thread_settings()['wait_policy']}), "
        f"torch {torch.__version__}",
        flush=True,
    )
    if args.profile:
        for name in args.impls:
            print(profile_steps(name, makers[name], args, train_set, device), flush=True)
        return
    records = [measure(name, makers[name], args, train_set, device) for name in args.impls]
    by = {r["impl"]: r for r in records}
    if "spikingjelly" in by:
        for name in ("spikeshield", "spikeshield-torch-pool", "spikeshield-reference"):
            if name in by:
                ratio = by[name]["images_per_second"] / by["spikingjelly"]["images_per_second"]
                cpu = by[name]["images_per_cpu_second"] / by["spikingjelly"]["images_per_cpu_second"]
                print(f"{name} / spikingjelly images/s: {ratio:.2f}x (per CPU-second: {cpu:.2f}x)")
    if args.json:
        meta = {
            "device": str(device),
            "machine": platform.machine(),
            "threads": torch.get_num_threads(),
            "thread_settings": thread_settings(),
            "torch": torch.__version__,
            "time_steps": args.time_steps,
            "batch_size": args.batch_size,
            "command": " ".join(["python", *sys.argv]),
        }
        if "spikeshield" in by:
            from spikeshield.kernels import backend_for

            meta["spikeshield_neuron_path"] = backend_for(torch.zeros(1, device=device)) or "reference"
        atomic_write_json(args.json, {"meta": meta, "records": records})


if __name__ == "__main__":
    main()
