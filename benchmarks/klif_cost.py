"""KLIF vs LIF vs PLIF: what one training step of the same network costs, in one run.

KLIF's claim (Jiang & Zhang, Neural Computation 2024): better learning than LIF "without
introducing additional computational cost". This script trains the same PLIF-paper network
(``plifnet``; Fang et al., ICCV 2021) with each neuron on the same synthetic batches of a
dataset's shape, and reports per neuron:

* the median seconds of one training step (forward, MSE on 10 voting neurons per class,
  backward, Adam step) over ``--rounds`` rounds of ``--steps`` steps, the neurons interleaved
  (every round runs every neuron, in a rotated order, so a busy machine slows them alike);
* images/s, and seconds per epoch = median step × ⌈``--samples`` / batch⌉ (an estimate from the
  median step, stated as such);
* the peak memory one training step allocates (CUDA: ``max_memory_allocated`` above what was
  allocated before; CPU: the allocator events of PyTorch's profiler, as ``neuron_kernels.py``);
* the ratios KLIF / LIF and PLIF / LIF of step time and peak memory;
* which code ran the neuron layers (``kernels``: forward calls per path, ``fused-c`` / ``triton``
  / ``reference``, from ``spikeshield.kernels.backends_used``).

Neurons run their fused kernels (C on CPU, Triton on CUDA; on CPU each block's last neuron and its
2×2 max-pool as one kernel) unless ``--kernels reference``. All
three use τ = 2, V_th = 1, hard reset to 0, sigmoid surrogate α = 4, detached reset — the
settings of ``experiments/klif.toml``. Inputs are random (uniform images, or Poisson event
counts for event datasets): the cost of dense conv/FC layers does not depend on the values.

    python benchmarks/klif_cost.py --quick                                   # seconds, a smoke test
    python benchmarks/klif_cost.py --dataset cifar10 --json klif_cost_cpu.json         # paper net
    python benchmarks/klif_cost.py --device cuda --dataset cifar10 --time-steps 10 --json klif_cost_cuda.json
    python benchmarks/klif_cost.py --device cuda --dataset dvs-gesture --time-steps 12 --model-opt blocks=5
"""

from __future__ import annotations

import argparse
import contextlib
import math
import platform
import statistics
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F
from neuron_kernels import peak_memory_mb, synchronize

from spikeshield import kernels
from spikeshield.cli import parse_options
from spikeshield.data import dataset_info
from spikeshield.data.downsample import frame_shape
from spikeshield.io import atomic_write_json
from spikeshield.models import SpikingModel, build_model
from spikeshield.runtime import positive_count

NEURONS = {
    "lif": {"tau": 2.0},
    "plif": {"tau": 2.0},
    "klif": {"tau": 2.0, "k_init": 1.0},
}
COMMON = {"surrogate": "sigmoid:4", "detach_reset": True}
TRAIN_SIZES = {"mnist": 60000, "fashion-mnist": 60000, "cifar10": 50000, "nmnist": 60000, "dvs-gesture": 1176,
               "cifar10-dvs": 9000, "digits": 1438}  # fmt: skip
"""Training samples per epoch of each dataset (CIFAR10-DVS: the 9:1 split)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--dataset",
        choices=tuple(TRAIN_SIZES),
        default="mnist",
        help="input shape and classes (default: mnist)",
    )
    parser.add_argument("--frame-size", type=int, default=None, help="event frames down-sampled to this size")
    parser.add_argument("--time-steps", "-T", type=int, default=8)
    parser.add_argument("--batch-size", "-B", type=int, default=16, help="default: 16 (the PLIF protocol)")
    parser.add_argument(
        "--model-opt", action="append", metavar="KEY=VALUE", help="plifnet option, e.g. channels=16, blocks=5"
    )
    parser.add_argument("--neurons", nargs="+", choices=tuple(NEURONS), default=list(NEURONS))
    parser.add_argument("--kernels", choices=("fused", "reference"), default="fused")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per neuron and round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (the median is reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per neuron first")
    parser.add_argument("--samples", type=int, default=None, help="epoch size (default: the dataset's)")
    parser.add_argument(
        "--threads", type=positive_count, default=None, help="torch intra-op threads (default: torch's)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: channels=8, T=2, 2 rounds of 2 steps"
    )
    parser.add_argument("--json", default=None, help="write the settings and records to this file")
    args = parser.parse_args(argv)
    if min(args.steps, args.rounds, args.time_steps, args.batch_size) < 1 or args.warmup < 0:
        parser.error("--steps, --rounds, --time-steps and --batch-size must be >= 1, --warmup >= 0")
    if args.quick:
        args.model_opt = [*(args.model_opt or []), "channels=8"]
        args.time_steps, args.steps, args.rounds, args.warmup = 2, 2, 2, 1
    return args


class Trainer:
    """One neuron's network, optimizer and fixed batch; :meth:`step` is one training step."""

    def __init__(self, neuron: str, args: argparse.Namespace, device: torch.device) -> None:
        info = dataset_info(args.dataset)
        self.events = info.kind == "events"
        shape = frame_shape(info, {"frame_size": args.frame_size} if args.frame_size else {})
        torch.manual_seed(0)
        self.model: SpikingModel = build_model(
            "plifnet",
            neuron=neuron,
            neuron_options={**NEURONS[neuron], **COMMON},
            num_classes=info.num_classes,
            input_shape=shape,
            time_steps=args.time_steps,
            encoder="events" if self.events else "direct",
            readout="voting",
            **parse_options(args.model_opt, "--model-opt"),
        ).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(1)
        b = args.batch_size
        x = (
            torch.poisson(torch.full((b, args.time_steps, *shape), 0.3), generator=g)
            if self.events
            else torch.rand(b, *shape, generator=g)
        )
        self.x = x.to(device)
        self.target = F.one_hot(torch.randint(0, info.num_classes, (b,), generator=g), info.num_classes)
        self.target = self.target.float().to(device)
        self.parameters = sum(p.numel() for p in self.model.parameters())

    def step(self) -> None:
        loss = F.mse_loss(self.model(self.x), self.target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def kernel_paths(model: torch.nn.Module) -> dict[str, int]:
    """Forward calls of the model's neuron layers per path that ran them (fused-c, triton, reference)."""
    paths: dict[str, int] = {}
    for counts in kernels.backends_used(model)["neurons"].values():
        for path, calls in counts.items():
            paths[path] = paths.get(path, 0) + calls
    return paths


def timed(trainer: Trainer, steps: int, device: torch.device) -> float:
    """Seconds per step over ``steps`` steps."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def measure(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    trainers = {n: Trainer(n, args, device) for n in args.neurons}
    for trainer in trainers.values():
        if args.warmup:
            timed(trainer, args.warmup, device)
    seconds: dict[str, list[float]] = {n: [] for n in trainers}
    order = list(trainers)
    for r in range(args.rounds):
        for name in order[r % len(order) :] + order[: r % len(order)]:
            seconds[name].append(timed(trainers[name], args.steps, device))
    samples = args.samples or TRAIN_SIZES[args.dataset]
    records = []
    for name, trainer in trainers.items():
        step = statistics.median(seconds[name])
        records.append(
            {
                "neuron": name,
                "parameters": trainer.parameters,
                "step_s": step,
                "step_s_rounds": seconds[name],
                "images_per_second": args.batch_size / step,
                "epoch_s": step * math.ceil(samples / args.batch_size),
                "epoch_samples": samples,
                "peak_mb": peak_memory_mb(trainer.step, device),
                "kernels": kernel_paths(trainer.model),
            }
        )
    return records


def ratios(records: list[dict[str, Any]]) -> dict[str, float]:
    by = {r["neuron"]: r for r in records}
    if "lif" not in by:
        return {}
    base = by["lif"]
    return {
        f"{name}/lif {key}": by[name][key] / base[key]
        for name in by
        if name != "lif"
        for key in ("step_s", "peak_mb")
        if base[key] > 0
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with kernels.reference_only() if args.kernels == "reference" else contextlib.nullcontext():
        backend = kernels.backend_for(torch.zeros(1, device=device)) if args.kernels == "fused" else None
        print(
            f"plifnet on {args.dataset}-shaped input, T={args.time_steps}, batch {args.batch_size}, "
            f"{args.kernels} neurons ({backend or 'reference loop'}); {device}, {torch.get_num_threads()} "
            f"threads, torch {torch.__version__}",
            flush=True,
        )
        records = measure(args, device)
    for r in records:
        print(
            f"{r['neuron']:5s} {r['step_s'] * 1e3:9.1f} ms/step  {r['images_per_second']:8.1f} img/s  "
            f"{r['epoch_s']:9.1f} s/epoch ({r['epoch_samples']} samples)  peak {r['peak_mb']:8.1f} MiB  "
            f"neurons: {', '.join(sorted(r['kernels']))}",
            flush=True,
        )
    found = ratios(records)
    for key, value in found.items():
        print(f"{key}: {value:.3f}")
    result = {
        "meta": {
            "command": " ".join(["python", *sys.argv]) if argv is None else " ".join(argv),
            "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "machine": platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "neuron_path": backend or "reference",
        },
        "records": records,
        "ratios": found,
    }
    if args.json:
        atomic_write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
