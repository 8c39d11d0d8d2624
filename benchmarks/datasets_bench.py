"""Dataset figures: load times (first and cached), augmentation cost vs a training step, and
one short training epoch of a ``cnn`` LIF net on each real dataset.

    python benchmarks/datasets_bench.py --data-root ../shared/data --json results/datasets/datasets.json

Parts (``--parts``, default all):

- ``load``: each dataset is loaded (train + test) into a fresh, empty cache folder (first load:
  reading, decoding, frame building, writing the cache), then again ``--repeats`` times from
  the cache; the median is reported.
- ``augment``: on CIFAR-10 batches of 128, the median time of ``crop:4 flip cutout:16`` per
  batch next to the median time of one training step (forward + backward + Adam) of the
  ``cnn`` LIF net at T = 4, measured in the same process on the same batches; likewise on
  N-MNIST event frames (``crop:2 flip``, T = 10).
- ``train``: ``spikeshield train``'s code path (:func:`spikeshield.training.train`) for one
  epoch on each dataset with the settings in ``TRAIN_RUNS``; test accuracy vs chance (10 %).

The machine's load average is recorded: on a shared 2-core machine every timing depends on it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import spikeshield  # noqa: F401  (first: idle OpenMP threads then sleep; see spikeshield.runtime)

# isort: split
import torch
import torch.nn.functional as F

from spikeshield.data import dataset_info, load_dataset
from spikeshield.data.augment import build_augmentation
from spikeshield.io import atomic_write_json
from spikeshield.models import build_model
from spikeshield.runtime import configure_threads, positive_count, tune_allocator

LOAD_RUNS = [("fashion-mnist", {}), ("cifar10", {}), ("nmnist", {"frames": 10})]
TRAIN_RUNS: list[dict[str, Any]] = [
    {"dataset": "fashion-mnist", "limit_train": 10000, "time_steps": 4, "batch_size": 128},
    {"dataset": "cifar10", "limit_train": 10000, "time_steps": 4, "batch_size": 128},
    {
        "dataset": "cifar10",
        "limit_train": 10000,
        "time_steps": 4,
        "batch_size": 128,
        "augment": ["crop:4", "flip", "cutout:16"],
    },
    {"dataset": "nmnist", "time_steps": 10, "batch_size": 32},
]


def median_time(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_load(root: str, repeats: int) -> list[dict[str, Any]]:
    records = []
    for name, options in LOAD_RUNS:
        with tempfile.TemporaryDirectory() as cache:
            os.environ["SPIKESHIELD_CACHE"] = cache
            start = time.perf_counter()
            train = load_dataset(name, "train", root, **options)
            test = load_dataset(name, "test", root, **options)
            first = time.perf_counter() - start

            def both(n: str = name, o: dict[str, Any] = options) -> None:
                load_dataset(n, "train", root, **o)
                load_dataset(n, "test", root, **o)

            cached = median_time(both, repeats)
            cache_bytes = sum(p.stat().st_size for p in Path(cache).rglob("*.npz"))
        record = {
            "dataset": name,
            "options": options,
            "train": len(train),
            "test": len(test),
            "shape": list(train.images.shape[1:]),
            "dtype": str(train.images.dtype).removeprefix("torch."),
            "train_class_counts": torch.bincount(train.labels).tolist(),
            "test_class_counts": torch.bincount(test.labels).tolist(),
            "first_load_s": round(first, 3),
            "cached_load_s_median": round(cached, 3),
            "cache_mb": round(cache_bytes / 2**20, 1),
            "cached": name != "fashion-mnist",
        }
        print(
            f"{name:14s} {len(train)}/{len(test)} {record['shape']} {record['dtype']}: first load "
            f"{first:.2f}s, cached {cached:.3f}s (cache {record['cache_mb']} MB)"
        )
        records.append(record)
    os.environ.pop("SPIKESHIELD_CACHE", None)
    return records


def bench_augment(root: str, batches: int, steps: int) -> list[dict[str, Any]]:
    records = []
    cifar_norm = dataset_info("cifar10").normalize
    setups = [
        ("cifar10", {}, ["crop:4", "flip", "cutout:16"], 4, {"normalize": cifar_norm}),
        ("nmnist", {"frames": 10}, ["crop:2", "flip"], 10, {"encoder": "events"}),
    ]
    for name, options, specs, time_steps, model_kwargs in setups:
        data = load_dataset(name, "train", root, limit=128 * batches, **options)
        info = dataset_info(name)
        fill = info.normalize[0] if info.normalize else None
        augment = build_augmentation(specs, fill=fill)
        gen = torch.Generator().manual_seed(0)
        loaded = list(data.batches(128, shuffle=True, generator=gen))
        fetch = median_time(
            lambda d=data, g=gen: next(iter(d.batches(128, shuffle=True, generator=g))), batches
        )
        aug_times = []
        for x, _ in loaded:
            start = time.perf_counter()
            augment(x, gen)
            aug_times.append(time.perf_counter() - start)
        torch.manual_seed(0)
        model = build_model(
            "cnn", neuron="lif", input_shape=info.input_shape, time_steps=time_steps, **model_kwargs
        )
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        step_times = []
        for i in range(steps):
            x, y = loaded[i % len(loaded)]
            start = time.perf_counter()
            x = augment(x, gen)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step_times.append(time.perf_counter() - start)
        record = {
            "dataset": name,
            "augment": specs,
            "batch_size": 128,
            "time_steps": time_steps,
            "batch_fetch_ms_median": round(fetch * 1e3, 2),
            "augment_ms_median": round(statistics.median(aug_times) * 1e3, 2),
            "train_step_ms_median": round(statistics.median(step_times) * 1e3, 1),
        }
        share = record["augment_ms_median"] / record["train_step_ms_median"]
        record["augment_share_of_step"] = round(share, 4)
        print(
            f"{name:10s} augment {record['augment_ms_median']:.2f} ms/batch, fetch "
            f"{record['batch_fetch_ms_median']:.2f} ms, training step "
            f"{record['train_step_ms_median']:.0f} ms (augment = {100 * share:.2f} % of a step)"
        )
        records.append(record)
    return records


def bench_train(root: str) -> list[dict[str, Any]]:
    from spikeshield.training import TrainConfig, train

    records = []
    for run in TRAIN_RUNS:
        config = TrainConfig(model="cnn", neuron="lif", epochs=1, data_root=root, seed=0, device="cpu", **run)
        with tempfile.TemporaryDirectory() as out:
            metrics = train(config, Path(out) / "run", progress=False)
        record = {
            "command": command_for(run, root),
            "train_samples": metrics["train_samples"],
            "test_samples": metrics["test_samples"],
            "test_accuracy": round(metrics["test_accuracy"], 4),
            "chance": 0.1,
            "train_seconds": round(metrics["train_seconds"], 1),
            "images_per_second": round(metrics["images_per_second"], 1),
            "dataset_split": metrics["dataset_split"],
        }
        print(
            f"{record['command']}\n    -> test accuracy {record['test_accuracy']:.4f}, "
            f"{record['train_seconds']}s"
        )
        records.append(record)
    return records


def command_for(run: dict[str, Any], root: str) -> str:
    parts = ["spikeshield train", f"--dataset {run['dataset']}", "--model cnn --neuron lif --epochs 1"]
    parts.append(f"-T {run['time_steps']}")
    parts.append(f"--batch-size {run['batch_size']}")
    if "limit_train" in run:
        parts.append(f"--limit-train {run['limit_train']}")
    if run.get("augment"):
        parts.append("--augment " + " ".join(run["augment"]))
    parts.append(f"--data-root {root} --device cpu --out RUN")
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--parts", nargs="+", default=["load", "augment", "train"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=positive_count, default=None, help="CPU threads (default: spikeshield's policy)"
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    tune_allocator()
    configure_threads(args.threads)  # every implementation in this process alike
    record: dict[str, Any] = {
        "meta": {
            "torch": torch.__version__,
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
            "date": time.strftime("%Y-%m-%d %H:%M"),
        }
    }
    if "load" in args.parts:
        record["load"] = bench_load(args.data_root, args.repeats)
    if "augment" in args.parts:
        record["augment"] = bench_augment(args.data_root, batches=20, steps=6)
    if "train" in args.parts:
        record["train"] = bench_train(args.data_root)
    record["meta"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.json, record)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
