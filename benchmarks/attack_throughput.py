"""Attack throughput (images/s): PGD-10 with spikeshield vs torchattacks, in one run.

Three ways to run the same L∞ PGD-10 (uniform random start, step 2.5ε/10) on the same inputs:

- ``spikeshield``: our PGD (``spikeshield.attacks``) on our model;
- ``torchattacks``: ``torchattacks.PGD`` 3.5.1 on our model;
- ``torchattacks-sj``: ``torchattacks.PGD`` on the equivalent SpikingJelly 2.0 model (the usual
  pair users run), its state reset before every forward as SpikingJelly needs.

The model is the MNIST ``cnn`` (conv32-conv32-fc, LIF τ = 2, hard reset, sigmoid surrogate α = 4,
direct encoding, T = 4) as built in ``benchmarks/train_throughput.py``; the SpikingJelly net gets
our weights (``--run``: a trained run folder; default: a seeded random init), and the script
checks that both give the same logits. Each repeat runs the three in turn (interleaved, so a
change of machine load hits all three), after one untimed warm-up each; the figure is the
median over the repeats. Peers are benchmark-only dependencies::

    pip install --no-deps torchattacks==3.5.1 spikingjelly==2.0.0 loguru

    python benchmarks/attack_throughput.py --data-root ../shared/data --threads 1 --json out.json
    python benchmarks/attack_throughput.py --data-root ../shared/data --images 16 --repeats 1   # a smoke run
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import spikeshield_net, spikingjelly_net

from spikeshield.attacks import Oracle, build_attack
from spikeshield.data import load_dataset
from spikeshield.io import atomic_write_json
from spikeshield.runtime import positive_count


class ResetEachCall(nn.Module):
    """The SpikingJelly net with its neuron state reset before every forward."""

    def __init__(
        self, net: nn.Module, forward: Callable[[Tensor], Tensor], reset: Callable[[], None]
    ) -> None:
        super().__init__()
        self.net, self._forward, self._reset = net, forward, reset

    def forward(self, x: Tensor) -> Tensor:
        self._reset()
        return self._forward(x)


def load_weights(ours: nn.Module, run: str | None) -> None:
    if run is None:
        return
    from spikeshield.runs import load_model, read_config

    config, trained = read_config(run), load_model(run)
    if (config.model, config.neuron, config.time_steps) != ("cnn", "lif", 4):
        raise SystemExit(
            f"--run must be a cnn/lif T=4 run, got {config.model}/{config.neuron} T={config.time_steps}"
        )
    ours.load_state_dict(trained.state_dict())


def copy_to_spikingjelly(ours: nn.Module, sj: nn.Sequential) -> None:
    """Our cnn's weights into the SpikingJelly net (the same layers in the same order)."""
    pairs = [(ours.stem[0], sj[0]), (ours.stem[1], sj[1]), (ours.body[1][1], sj[4]), (ours.body[1][2], sj[5])]
    pairs.append((ours.head[0], sj[9]))
    for src, dst in pairs:
        dst.load_state_dict(src.state_dict())


def our_pgd(model: nn.Module, eps: float) -> Callable[[Tensor, Tensor], Tensor]:
    attack = build_attack("pgd", eps=eps, steps=10)
    oracle = Oracle(model)
    return lambda x, y: attack.perturb(oracle, x, y, torch.Generator().manual_seed(0))


def torchattacks_pgd(model: nn.Module, eps: float) -> Callable[[Tensor, Tensor], Tensor]:
    import torchattacks

    attack = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / 10, steps=10, random_start=True)
    return lambda x, y: attack(x, y)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", default=None, help="folder holding MNIST (default: $SPIKESHIELD_DATA)")
    parser.add_argument(
        "--run", default=None, help="a trained cnn/lif T=4 MNIST run folder (default: random init)"
    )
    parser.add_argument("--images", type=int, default=256, help="inputs attacked per repeat (default 256)")
    parser.add_argument("--batch-size", type=int, default=256, help="attack batch size (default 256)")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats, interleaved (default 3)")
    parser.add_argument(
        "--threads", type=positive_count, default=1, help="torch intra-op threads (default 1)"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--json", default=None, help="write the records to this file")
    args = parser.parse_args()
    from spikeshield.runtime import tune_allocator

    tune_allocator()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    ours, _, _ = spikeshield_net(4)
    load_weights(ours, args.run)
    sj_net, sj_forward, sj_reset = spikingjelly_net(4)
    copy_to_spikingjelly(ours, sj_net)
    ours.to(device).eval()
    sj = ResetEachCall(sj_net, sj_forward, sj_reset).to(device).eval()
    x, y = load_dataset("mnist", "test", args.data_root).subset(args.images).tensors()
    batches = [(x[i : i + args.batch_size].to(device), y[i : i + args.batch_size].to(device))
               for i in range(0, len(x), args.batch_size)]  # fmt: skip
    with torch.no_grad():
        gap = float((ours(batches[0][0]) - sj(batches[0][0])).abs().max())
    print(f"max |logits ours - logits SpikingJelly| on a batch: {gap:.2e}", flush=True)
    impls = {
        "spikeshield": our_pgd(ours, args.eps),
        "torchattacks": torchattacks_pgd(ours, args.eps),
        "torchattacks-sj": torchattacks_pgd(sj, args.eps),
    }

    def run(fn: Callable[[Tensor, Tensor], Tensor]) -> tuple[float, float]:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fooled = 0
        for xb, yb in batches:
            adv = fn(xb, yb)
            with torch.no_grad():
                fooled += int((ours(adv).argmax(1) != yb).sum())
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, fooled / len(x)

    for fn in impls.values():  # warm-up (builds the C kernels, fills caches)
        run(fn)
    seconds: dict[str, list[float]] = {name: [] for name in impls}
    fooled: dict[str, float] = {}
    for r in range(args.repeats):
        for name, fn in impls.items():
            s, fooled[name] = run(fn)
            seconds[name].append(s)
            print(f"repeat {r + 1}: {name:16s} {s:7.2f}s  {len(x) / s:7.1f} img/s", flush=True)
    records = []
    for name in impls:
        median = statistics.median(seconds[name])
        records.append({"impl": name, "seconds": seconds[name], "median_seconds": median,
                        "images_per_second": len(x) / median, "fooled_rate": fooled[name]})  # fmt: skip
    by = {r["impl"]: r for r in records}
    for r in records:
        rate = f"{r['images_per_second']:7.1f} img/s (median of {args.repeats})"
        print(f"{r['impl']:16s} {rate}, fooled {r['fooled_rate']:.3f}")
    for other in ("torchattacks", "torchattacks-sj"):
        ratio = by["spikeshield"]["images_per_second"] / by[other]["images_per_second"]
        print(f"spikeshield / {other}: {ratio:.2f}x")
    if args.json:
        meta = {
            "device": str(device), "threads": torch.get_num_threads(), "machine": platform.machine(),
            "torch": torch.__version__, "images": len(x), "batch_size": args.batch_size, "eps": args.eps,
            "steps": 10, "time_steps": 4, "weights": args.run or "random init (seed 0)",
            "logit_gap_vs_spikingjelly": gap, "command": " ".join(["python", *sys.argv]),
        }  # fmt: skip
        atomic_write_json(args.json, {"meta": meta, "records": records})


if __name__ == "__main__":
    main()
