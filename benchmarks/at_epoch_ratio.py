"""Cost of an adversarial-training epoch relative to a plain (raw) one, measured in one run.

RSSNN's ``at`` mode (Ding et al., ICML 2024) crafts an FGSM example per batch (one extra forward
and backward in eval mode) and trains on the clean and the perturbed batch (two forwards, one
backward through both), so one epoch should cost about 2–2.2× a raw BPTT epoch on the same model;
the goal is ≤ 2.2×. This script trains the same model, data, batches and seed for one epoch in
each mode, alternating the order over ``--repeats`` rounds (raw, at, at, raw, …) so that drifts
of a shared machine hit both alike, and reports each mode's median epoch time (training loop only:
no test pass, no file writing) and the ratio to raw::

    # the paper's model (VGG11 DLIF, T = 8, batch 64) on a CIFAR-10 subset, on a GPU
    python benchmarks/at_epoch_ratio.py --data-root ../shared/data --device cuda --amp --json out.json
    # a small CPU set-up (one thread, as the reduced grid ran)
    OMP_NUM_THREADS=1 python benchmarks/at_epoch_ratio.py --data-root ../shared/data --device cpu \\
        --dataset fashion-mnist --model vgg5 --model-opt width=16 --model-opt fc_hidden=256 \\
        --time-steps 4 --limit-train 2000 --modes bptt at at-reg

``--experiment FILE --variants NEURON/MODE ...`` times variants of an experiment grid instead,
each with exactly its cell's training settings (first dataset, model and seed; one epoch), e.g.
the oscillation defence against LIF and LIF with PGD adversarial training (issue 15)::

    OMP_NUM_THREADS=1 python benchmarks/at_epoch_ratio.py --experiment experiments/oscillation.toml \\
        --variants lif/bptt osc/bptt osc-fake/bptt lif/pgd-at --repeats 9 --device cpu

Run it on a quiet machine: the numbers are a ratio of two wall-clock times.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from spikeshield.cli import parse_options
from spikeshield.environment import environment
from spikeshield.errors import UsageError
from spikeshield.experiments.plan import load_plan
from spikeshield.io import atomic_write_json
from spikeshield.runtime import positive_count
from spikeshield.training import TrainConfig, train
from spikeshield.training.evaluate import resolve_device

GOAL = 2.2


def epoch_seconds(config: TrainConfig, folder: Path) -> dict[str, float]:
    """One epoch of ``config`` into ``folder``: its training-loop seconds and images/s."""
    metrics = train(config, folder, log=lambda _m: None, progress=False)
    record = metrics["history"][0]
    return {"seconds": record["train_seconds"], "images_per_second": record["images_per_second"]}


def measure(configs: dict[str, TrainConfig], repeats: int, work: Path) -> dict[str, Any]:
    """Median epoch time per labelled config over ``repeats`` rounds, the order reversed every
    other round; ratios to the first."""
    labels = list(configs)
    times: dict[str, list[float]] = {m: [] for m in labels}
    rates: dict[str, list[float]] = {m: [] for m in labels}
    for r in range(repeats):
        for label in labels if r % 2 == 0 else reversed(labels):
            result = epoch_seconds(configs[label], work / f"{label.replace('/', '-')}-{r}")
            times[label].append(result["seconds"])
            rates[label].append(result["images_per_second"])
            print(f"round {r + 1}/{repeats} {label}: {result['seconds']:.2f} s", file=sys.stderr)
    raw = statistics.median(times[labels[0]])
    return {
        label: {
            "epoch_seconds": times[label],
            "median_seconds": statistics.median(times[label]),
            "median_images_per_second": statistics.median(rates[label]),
            f"ratio_to_{labels[0]}": statistics.median(times[label]) / raw,
        }
        for label in labels
    }


def experiment_configs(
    path: str,
    variants: list[str],
    data_root: str | None,
    device: str,
    dataset: str | None = None,
    model: str | None = None,
) -> dict[str, TrainConfig]:
    """``{NEURON/MODE: config}``: each variant's first cell of the experiment grid (its training
    settings exactly), for one epoch; ``dataset`` / ``model`` (when given) choose the grid's
    cells of that dataset / model. Raises UsageError naming a variant with no such cell."""
    plan = load_plan(path)
    chosen = [c for c in plan.cells() if dataset in (None, c.dataset) and model in (None, c.model)]
    where = "".join(f" {k} {v}" for k, v in (("dataset", dataset), ("model", model)) if v is not None)
    if not chosen:
        raise UsageError(f"{path}: no cell with{where}")
    cells = {f"{c.neuron}/{c.mode}": c for c in reversed(chosen)}  # the first cell wins
    missing = [v for v in variants if v not in cells]
    if missing:
        raise UsageError(
            f"{path}: no cell {', '.join(missing)}{' with' + where if where else ''} "
            f"(variants: {', '.join(reversed(cells))})"
        )
    return {v: replace(plan.train_config(cells[v], data_root, device), epochs=1) for v in variants}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--dataset", default=None, help="default cifar10; with --experiment: its cells of this dataset"
    )
    p.add_argument("--model", default=None, help="default vgg11; with --experiment: its cells of this model")
    p.add_argument("--model-opt", action="append", metavar="KEY=VALUE", default=None)
    p.add_argument("--neuron", default=None, help="default dlif")
    p.add_argument("--time-steps", type=int, default=None, help="default 8")
    p.add_argument("--batch-size", type=int, default=None, help="default 64")
    p.add_argument("--limit-train", type=int, default=None, help="training images per epoch (default 5000)")
    p.add_argument("--modes", nargs="+", default=None, help="the first is the reference (default: bptt at)")
    p.add_argument("--repeats", type=positive_count, default=3, help="rounds per mode (default 3)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA (the paper trains in fp16)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--experiment", default=None, help="time variants of this experiment file instead")
    p.add_argument(
        "--variants",
        nargs="+",
        default=None,
        metavar="NEURON/MODE",
        help="with --experiment: the cells' neuron and mode labels; the first is the reference",
    )
    args = p.parse_args(argv)
    if (args.experiment is None) != (args.variants is None):
        p.error("--experiment and --variants go together")
    if args.experiment is not None:
        for flag in ("model_opt", "neuron", "time_steps", "batch_size", "limit_train", "modes", "amp"):
            # the experiment's cells fix these
            if getattr(args, flag) not in (None, False):  # given at all, even at its default
                p.error(
                    f"--{flag.replace('_', '-')} does not apply with --experiment (its cells' settings apply)"
                )
    base = dict(
        dataset=args.dataset or "cifar10",
        model=args.model or "vgg11",
        model_options=parse_options(args.model_opt, "--model-opt"),
        neuron="dlif" if args.neuron is None else args.neuron,
        time_steps=8 if args.time_steps is None else args.time_steps,
        batch_size=64 if args.batch_size is None else args.batch_size,
        limit_train=5000 if args.limit_train is None else args.limit_train,
        limit_test=64 if args.batch_size is None else args.batch_size,
        epochs=1,
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-4,
        data_root=args.data_root,
        device=args.device,
        amp=args.amp,
    )
    if args.experiment is not None:
        try:
            configs = experiment_configs(
                args.experiment, args.variants, args.data_root, args.device, args.dataset, args.model
            )
        except UsageError as exc:
            p.error(str(exc))
        setup: dict[str, Any] = {"experiment": args.experiment}
        setup |= {v: {k: x for k, x in asdict(c).items() if k != "data_root"} for v, c in configs.items()}
    else:
        configs = {mode: TrainConfig(**base, mode=mode) for mode in args.modes or ("bptt", "at")}
        setup = {k: v for k, v in base.items() if k != "data_root"}
    reference = next(iter(configs))
    with tempfile.TemporaryDirectory(prefix="at-epoch-ratio-") as work:
        results = measure(configs, args.repeats, Path(work))
    for label, r in results.items():
        print(
            f"{label:14s} median epoch {r['median_seconds']:.3f} s, "
            f"{r['median_images_per_second']:.1f} images/s, "
            f"{r[f'ratio_to_{reference}']:.2f}× {reference}"
        )
    report = {
        "benchmark": "at_epoch_ratio",
        "setup": setup | {"repeats": args.repeats},
        "results": results,
        "goal": f"at / raw <= {GOAL}",
        "environment": environment(resolve_device(args.device)),
        "torch_threads": torch.get_num_threads(),
    }
    if "at" in results and reference != "at":
        ratio = results["at"][f"ratio_to_{reference}"]
        print(f"at / {reference} = {ratio:.2f} (goal <= {GOAL}: {'met' if ratio <= GOAL else 'NOT met'})")
    if args.json:
        atomic_write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
