"""Training and inference time of noise-based fast training vs BPTT and ANN-to-SNN, in one run.

The claims (Jiang & Zhang, Neural Computation 35(9), 2023): training a single-step (T = 1)
network of noisy IF neurons takes 65-75 % less time than BPTT at T = N on the same network,
epochs and data; the converted network needs far fewer steps N than ANN-to-SNN conversion for
the same accuracy, hence > 100x faster inference.

What is timed, with the same batches, the same net (``cnn``: conv-BN-neuron-maxpool x 2, linear
readout; 1x28x28 inputs) and the same optimiser (Adam):

* training: one optimiser step of ``noisy-if`` at T = 1 (Gaussian noise, gradient = the noise
  density) and of BPTT on soft-reset IF neurons at each T in ``--bptt-steps``; reported as
  seconds per step and the time saved, ``1 - t(noisy) / t(BPTT at T = N)``; the ReLU ANN's step
  (what ANN-to-SNN conversion trains) for reference;
* inference: one forward pass (eval, no gradient) of the converted soft-reset IF network at
  each N in ``--infer-steps``; every ``--pairs A:B`` gives ``t(N = B) / t(N = A)``, the speed-up
  of the noise-trained network at N = A over an ANN-to-SNN network that needs N = B for the same
  accuracy (read A and B off ``steps.md`` of ``results/noise_training/grid``). Both converted
  networks are the same IF network, so their cost differs only through N.

Each figure is the median of ``--repeats`` timed blocks of ``--steps`` steps after ``--warmup``
untimed ones. Run it on a quiet machine (nothing else running), one thread::

    python benchmarks/noise_training.py --data-root ../shared/data --threads 1 \\
        --json results/noise_training/speed_cpu_1thread.json

Tiny check (seconds, numbers meaningless): ``--steps 1 --repeats 1 --warmup 0 --batch-size 8
--bptt-steps 2 --infer-steps 1 4 --pairs 1:4``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from spikeshield.data import load_dataset
from spikeshield.data.base import ArrayDataset
from spikeshield.environment import environment
from spikeshield.io import atomic_write_json
from spikeshield.models import build_model
from spikeshield.runtime import positive_count

IF_SOFT = {"reset": "soft", "v_init": 0.5}
MNIST_NORM = ((0.1307,), (0.3081,))


def images(args: argparse.Namespace) -> ArrayDataset:
    """MNIST training images if a data root is given, else seeded random 28x28 images."""
    if args.data_root:
        return load_dataset("mnist", "train", args.data_root, limit=args.batch_size * 64)
    g = torch.Generator().manual_seed(0)
    n = args.batch_size * 8
    pixels = torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    return ArrayDataset(pixels, torch.randint(0, 10, (n,), generator=g))


Batch = tuple[Tensor, Tensor]


def batch_stream(data: ArrayDataset, batch_size: int, device: torch.device) -> Callable[[], Batch]:
    """An endless, seeded stream of full batches (the same order for every configuration)."""
    g = torch.Generator().manual_seed(0)
    state: dict[str, object] = {}

    def next_batch() -> Batch:
        while True:
            it = state.get("it")
            if it is None:
                it = state["it"] = iter(data.batches(batch_size, shuffle=True, generator=g, device=device))
            try:
                x, y = next(it)  # type: ignore[call-overload]
            except StopIteration:
                state["it"] = None
                continue
            if len(y) == batch_size:
                return x, y

    return next_batch


def timed(step: Callable[[], None], args: argparse.Namespace, device: torch.device) -> float:
    """Median seconds per step over ``repeats`` blocks of ``steps`` steps, after ``warmup``."""
    for _ in range(args.warmup):
        step()
    blocks = []
    for _ in range(args.repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        blocks.append((time.perf_counter() - start) / args.steps)
    return statistics.median(blocks)


def train_step_seconds(neuron: str, options: dict, time_steps: int, args, data, device) -> float:
    torch.manual_seed(0)
    model = build_model("cnn", neuron=neuron, neuron_options=options, input_shape=(1, 28, 28),
                        time_steps=time_steps, normalize=MNIST_NORM).to(device).train()  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    next_batch = batch_stream(data, args.batch_size, device)

    def step() -> None:
        x, y = next_batch()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return timed(step, args, device)


def inference_seconds(time_steps: int, args, data, device) -> float:
    torch.manual_seed(0)
    model = build_model("cnn", neuron="if", neuron_options=IF_SOFT, input_shape=(1, 28, 28),
                        time_steps=time_steps, normalize=MNIST_NORM).to(device).eval()  # fmt: skip
    next_batch = batch_stream(data, args.batch_size, device)

    @torch.no_grad()
    def step() -> None:
        model(next_batch()[0])

    return timed(step, args, device)


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--data-root", default=None, help="folder holding MNIST (default: random images)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--threads", type=positive_count, default=1, help="torch intra-op threads (default: 1)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="as in the grid (default: 64)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per block (default: 20)")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks, median kept (default: 5)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    parser.add_argument("--bptt-steps", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--infer-steps", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128])
    parser.add_argument("--pairs", nargs="*", default=[], metavar="A:B",
                        help="inference speed-up t(N = B) / t(N = A), e.g. 4:64")  # fmt: skip
    parser.add_argument("--json", default=None, help="write every figure and the environment here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    pairs = [tuple(int(v) for v in p.split(":")) for p in args.pairs]
    missing = sorted({n for pair in pairs for n in pair} - set(args.infer_steps))
    if missing:
        parser.error(f"--pairs use N = {missing}, which --infer-steps does not measure")
    data = images(args)
    env_before = environment(device)

    noisy = train_step_seconds("noisy-if", {}, 1, args, data, device)
    print(f"train  noisy-if T=1        {noisy * 1e3:9.2f} ms/step", flush=True)
    ann = train_step_seconds("relu", {}, 1, args, data, device)  # the ANN that ANN-to-SNN starts from
    print(f"train  relu (ANN) T=1      {ann * 1e3:9.2f} ms/step", flush=True)
    training = []
    for t in args.bptt_steps:
        seconds = train_step_seconds("if", IF_SOFT, t, args, data, device)
        training.append({"bptt_time_steps": t, "bptt_seconds_per_step": seconds,
                         "noisy_seconds_per_step": noisy, "time_saved": 1.0 - noisy / seconds})  # fmt: skip
        print(f"train  BPTT IF T={t:<4d}      {seconds * 1e3:9.2f} ms/step   noisy saves "
              f"{100 * (1 - noisy / seconds):5.1f} %", flush=True)  # fmt: skip
    inference = {}
    for n in args.infer_steps:
        inference[n] = inference_seconds(n, args, data, device)
        print(f"infer  IF N={n:<4d}          {inference[n] * 1e3:9.2f} ms/batch", flush=True)
    speedups = [
        {"noisy_steps": a, "ann2snn_steps": b, "speedup": inference[b] / inference[a]} for a, b in pairs
    ]
    for s in speedups:
        print(f"inference speed-up N={s['noisy_steps']} vs N={s['ann2snn_steps']}: {s['speedup']:.1f}x")
    if args.json:
        atomic_write_json(args.json, {
            "benchmark": "noise_training", "net": "cnn (conv32-conv32-fc), 1x28x28", "settings": vars(args),
            "training": training, "ann_seconds_per_step": ann,
            "inference_seconds_per_batch": inference, "inference_speedups": speedups,
            "environment_before": env_before, "environment_after": environment(device),
        })  # fmt: skip
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
