"""``spikeshield sample train|evaluate|compress|experiment``: the spiking sampling network."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from spikeshield import validate
from spikeshield.errors import UsageError
from spikeshield.io import atomic_write_json, atomic_write_text, ensure_dir, refuse_to_replace
from spikeshield.sampling.masks import MASK_KINDS, check_rate
from spikeshield.sampling.model import CONFIG_FILE, DEFAULT_RATES

RATES_HELP = "sampling rates in (0, 1], fractions of the pixels (events) kept"


def add_arguments(group: argparse.ArgumentParser, add_data: Any) -> None:
    """Give the ``sample`` command's parser ``group`` its description and subcommands."""
    group.description = (
        "The spiking sampling network (Jiang & Zhang, reconstructed from the abstract): a small "
        "convolutional SNN emits one keep/mask spike per pixel (per pixel and time bin for events), "
        "trained jointly with a reconstructor through surrogate gradients, compared with random, "
        "regular-grid and top-k-by-magnitude masks at equal measured rate (PSNR, SSIM), and used to "
        "compress N-MNIST event recordings into real N-MNIST files."
    )
    cmds = group.add_subparsers(dest="sample_command", metavar="SUBCOMMAND", parser_class=type(group))
    _train_parser(cmds, add_data)
    _evaluate_parser(cmds, add_data)
    _compress_parser(cmds, add_data)
    _experiment_parser(cmds, add_data)


def _rates(p: argparse.ArgumentParser, default: Any) -> None:
    p.add_argument("--rates", type=float, nargs="+", default=default, metavar="RATE", help=f"{RATES_HELP}")


def _train_parser(cmds: Any, add_data: Any) -> None:
    p = cmds.add_parser(
        "train",
        help="train the spiking sampler (and baselines' reconstructors) with a reconstructor",
        description=(
            "Train one run per mask source into OUT/<mask>/: 'spiking' trains the spiking sampler and its "
            "reconstructor end to end on MSE; 'random', 'grid', 'magnitude' train a reconstructor of the "
            "same architecture and budget on that baseline's masks. Each batch trains at one of --rates. "
            "Writes config.json, model.safetensors, metrics.json per run and OUT/masks.png."
        ),
    )
    p.add_argument(
        "--dataset", default="digits", help="image dataset, or nmnist for events (default: digits)"
    )
    p.add_argument("--masks", nargs="+", default=["spiking"], choices=MASK_KINDS, help="default: spiking")
    _rates(p, list(DEFAULT_RATES))
    p.add_argument(
        "--rule",
        choices=("topk", "penalty"),
        default="topk",
        help="rate constraint: exact top-k, or a penalty (mean keep − rate)², one rate",
    )
    p.add_argument(
        "--penalty-weight", type=float, default=10.0, help="weight of the rate penalty (default 10)"
    )
    p.add_argument(
        "--time-steps", "-T", type=int, default=4, help="sampler steps T / event time bins (default 4)"
    )
    p.add_argument("--hidden", type=int, default=16, help="channels of the sampler's two layers (default 16)")
    p.add_argument("--neuron", default="lif", help="the sampler's neuron (default lif)")
    p.add_argument("--neuron-opt", action="append", metavar="KEY=VALUE", help="neuron option, repeatable")
    p.add_argument("--surrogate", default="atan:2", help="keep spike's surrogate gradient (default atan:2)")
    p.add_argument("--reconstructor", choices=("cnn", "snn"), default="cnn", help="default: cnn")
    p.add_argument("--recon-hidden", type=int, default=32, help="reconstructor width (default 32)")
    p.add_argument("--recon-layers", type=int, default=4, help="reconstructor convolutions (default 4)")
    p.add_argument("--epochs", type=int, default=2, help="default 2")
    p.add_argument("--batch-size", type=int, default=64, help="default 64")
    p.add_argument(
        "--lr", type=float, default=1e-3, help="Adam learning rate, cosine schedule (default 1e-3)"
    )
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument(
        "--limit-train", type=int, default=None, metavar="N", help="a fixed subset of N training samples"
    )
    p.add_argument(
        "--limit-test", type=int, default=None, metavar="N", help="a fixed subset of N test samples"
    )
    p.add_argument("--out", metavar="DIR", required=True, help="folder for the runs (OUT/<mask>/)")
    add_data(p)


def _evaluate_parser(cmds: Any, add_data: Any) -> None:
    p = cmds.add_parser(
        "evaluate",
        help="PSNR and SSIM vs sampling rate of trained runs, spiking sampler beside the baselines",
        description=(
            "Evaluate the runs in --run (a folder of OUT/<mask>/ runs, or one run) on the test images at "
            "each "
            "rate: the baselines keep per image exactly as many pixels as the spiking sampler. Writes "
            "evaluation.json, table.md, psnr.png (PSNR/SSIM vs rate) and masks.png into --out."
        ),
    )
    p.add_argument("--run", metavar="DIR", required=True, help="folder written by 'spikeshield sample train'")
    _rates(p, list(DEFAULT_RATES))
    p.add_argument("--limit", type=int, default=None, metavar="N", help="a fixed subset of N test images")
    p.add_argument("--seed", type=int, default=0, help="seed of the random masks (default 0)")
    p.add_argument("--batch-size", type=int, default=256, help="default 256")
    p.add_argument("--out", metavar="DIR", default=None, help="output folder (default: RUN/evaluation)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation in --out")
    add_data(p)


def _compress_parser(cmds: Any, add_data: Any) -> None:
    p = cmds.add_parser(
        "compress",
        help="compress N-MNIST recordings with a trained event sampler into an N-MNIST .tar.gz/.bz2/.xz",
        description=(
            "Keep the events of each N-MNIST recording (under --data-root) that the spiking sampler of --run "
            "picks, until --rate of its events are kept, and write them in the N-MNIST 40-bit format "
            "(tonic's layout) in a tar archive compressed as its name says (.tar.gz, .tar.bz2 or .tar.xz), "
            "readable by the nmnist dataset. The file is read back and checked against the kept events. "
            "--random FILE also writes random dropping at the same per-recording event counts. Prints "
            "events and bytes before and after, and the lossless baseline: every event in the same archive."
        ),
    )
    p.add_argument("--run", metavar="DIR", required=True, help="a spiking-sampler run trained on nmnist")
    p.add_argument("--rate", type=float, required=True, help="fraction of each recording's events to keep")
    p.add_argument("--out", metavar="FILE", required=True, help="archive to write (.tar.gz/.bz2/.xz)")
    p.add_argument(
        "--random", metavar="FILE", default=None, help="also write random dropping at equal counts"
    )
    p.add_argument(
        "--splits", nargs="+", choices=("train", "test"), default=["train", "test"], help="default: both"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of --random (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace --out / --random if they exist")
    add_data(p)


def _experiment_parser(cmds: Any, add_data: Any) -> None:
    p = cmds.add_parser(
        "experiment",
        help="run a sampling experiment file (the reproduction's grid); rerun to resume",
        description=(
            "Run the grid of a sampling experiment TOML (experiments/sampling.toml): per dataset and seed, "
            "the spiking sampler's and the baselines' runs and their PSNR/SSIM evaluation; the DVS branch "
            "(sampler, classifier, compression at each rate vs random dropping). Writes summary.json, "
            "table.md, table.csv, figures and COMMAND into --out; finished work is kept and reused."
        ),
    )
    p.add_argument("file", help="experiment file (.toml)")
    p.add_argument("--out", metavar="DIR", required=True, help="output folder")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="only these seeds of the file")
    p.add_argument(
        "--datasets", nargs="+", default=None, help="only these datasets ('events': the DVS branch)"
    )
    p.add_argument("--limit-train", type=int, default=None, metavar="N", help="train every run on N samples")
    p.add_argument("--limit-test", type=int, default=None, metavar="N", help="evaluate on N test images")
    p.add_argument("--epochs", type=int, default=None, help="train every run this many epochs")
    p.add_argument("--dry-run", action="store_true", help="check the file and list the runs, run nothing")
    p.add_argument("--overwrite", action="store_true", help="replace another experiment's summary in --out")
    add_data(p)


def cmd_sample(args: argparse.Namespace) -> int:
    commands = {"train": _train, "evaluate": _evaluate, "compress": _compress, "experiment": _experiment}
    if args.sample_command is None:
        raise UsageError("sample needs a subcommand: train, evaluate, compress or experiment (see --help)")
    return commands[args.sample_command](args)


def _train(args: argparse.Namespace) -> int:
    from spikeshield.cli import parse_options
    from spikeshield.sampling.model import SampleConfig
    from spikeshield.sampling.train import train_sampling

    configs = {
        mask: SampleConfig(
            dataset=args.dataset,
            mask=mask,
            rates=list(args.rates),
            rule=args.rule,
            time_steps=args.time_steps,
            hidden=args.hidden,
            neuron=args.neuron,
            surrogate=args.surrogate,
            penalty_weight=args.penalty_weight,
            neuron_options=parse_options(args.neuron_opt, "--neuron-opt")
            if args.neuron_opt
            else {"tau": 2.0},
            reconstructor=args.reconstructor,
            recon_hidden=args.recon_hidden,
            recon_layers=args.recon_layers,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            limit_train=args.limit_train,
            limit_test=args.limit_test,
            data_root=args.data_root,
            device=args.device,
        )
        for mask in dict.fromkeys(args.masks)
    }
    out = ensure_dir(args.out)
    for mask, config in configs.items():
        metrics = train_sampling(config, out / mask)
        last = metrics["history"][-1]
        print(f"{mask}: train MSE {last['mse']:.5f}, measured rate {last['rate']:.3f} "
              f"({metrics['train_seconds']:.0f}s); wrote {out / mask}")  # fmt: skip
    return 0


def find_runs(folder: Path) -> dict[str, Path]:
    """``{mask: run folder}`` of a folder holding one run or ``<mask>/`` runs."""
    from spikeshield.sampling.model import read_sample_config

    if (folder / CONFIG_FILE).is_file():
        return {read_sample_config(folder).mask: folder}
    runs = {m: folder / m for m in MASK_KINDS if (folder / m / CONFIG_FILE).is_file()}
    if not runs:
        raise UsageError(f"{folder} holds no sampling run (config.json) nor <mask>/ runs")
    return runs


def _evaluate(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from spikeshield.data import dataset_info
    from spikeshield.sampling.evaluate import evaluate_models
    from spikeshield.sampling.experiment import aggregate_images, markdown
    from spikeshield.sampling.figures import mask_gallery, rate_curves
    from spikeshield.sampling.model import load_sampling_model
    from spikeshield.sampling.train import finished, load_split
    from spikeshield.training import resolve_device

    rates = [check_rate(r, "--rates") for r in args.rates]
    validate.non_negative_int("--seed", args.seed)
    validate.positive_int("--batch-size", args.batch_size)
    if args.limit is not None:
        validate.positive_int("--limit", args.limit)
    run = Path(args.run)
    if not run.is_dir():
        raise UsageError(f"run folder {run} does not exist")
    runs = find_runs(run)
    unfinished = [str(p) for p in runs.values() if not finished(p)]
    if unfinished:
        raise UsageError(f"{', '.join(unfinished)}: training has not finished")
    out = Path(args.out) if args.out else run / "evaluation"
    refuse_to_replace([out / "evaluation.json"], overwrite=args.overwrite, what="evaluation")
    device = resolve_device(args.device)
    models, configs = {}, {}
    for mask, folder in runs.items():
        models[mask], configs[mask] = load_sampling_model(folder, device)
    config = next(iter(configs.values()))
    if dataset_info(config.dataset).kind == "events":
        raise UsageError(f"{config.dataset} is event data: evaluate it with 'spikeshield sample compress'")
    root = args.data_root if args.data_root is not None else config.data_root
    limit = args.limit if args.limit is not None else config.limit_test
    data = load_split(replace(config, data_root=root, limit_test=limit), "test")
    records = evaluate_models(models, data, rates, seed=args.seed, batch_size=args.batch_size, device=device)
    ensure_dir(out)
    atomic_write_json(out / "evaluation.json", {"runs": {k: str(v) for k, v in runs.items()}, "rates": rates,
                                                "test_samples": len(data), "records": records})  # fmt: skip
    rows = aggregate_images({config.dataset: [{"records": records}]})
    summary = {"name": f"sampling evaluation of {run}", "masks": list(models), "datasets": [config.dataset],
               "images": rows, "notes": [f"{len(data)} test images of {config.dataset}."]}  # fmt: skip
    text = markdown(summary)
    atomic_write_text(out / "table.md", text)
    rate_curves(rows, config.dataset, out / "psnr.png")
    x = data.tensors()[0][:8].to(device)
    mask_gallery(
        models,
        x,
        rates[len(rates) // 2],
        out / "masks.png",
        f"{config.dataset}, rate {rates[len(rates) // 2]:g}",
    )
    print(text)
    print(f"wrote {out}/evaluation.json, table.md, psnr.png, masks.png")
    return 0


def _compress(args: argparse.Namespace) -> int:
    from spikeshield.sampling.compress import (
        compressor_of,
        random_keep,
        read_back,
        read_recordings,
        sampler_keep,
        write_compressed,
    )
    from spikeshield.sampling.model import load_sampling_model
    from spikeshield.training import resolve_device

    rate = check_rate(args.rate, "--rate")
    validate.non_negative_int("--seed", args.seed)
    targets = [Path(args.out)] + ([Path(args.random)] if args.random else [])
    refuse_to_replace(targets, overwrite=args.overwrite, what="compressed file")
    for target in targets:
        compressor_of(target)
    device = resolve_device(args.device)
    model, config = load_sampling_model(args.run, device)
    if not config.events:
        raise UsageError(f"{args.run} was trained on {config.dataset}, not on event data")
    recordings = read_recordings(
        args.data_root if args.data_root is not None else config.data_root, args.splits
    )
    keeps = sampler_keep(model, recordings, rate, config.time_steps, device=device)
    sets = {"sampler": (Path(args.out), keeps)}
    if args.random:
        sets["random"] = (Path(args.random), random_keep(keeps, args.seed))
    lossless: dict[str, int] = {}  # per compressor: the archive of every event, made once
    for kind, (path, kept) in sets.items():
        ensure_dir(path.parent)
        info = write_compressed(path, recordings, kept, lossless.get(compressor_of(path)))
        lossless[info["compressor"]] = info["lossless_bytes"]
        expected = {r.name: int(k.sum()) for r, k in zip(recordings, kept)}
        back = {name: len(e) for name, e in read_back(path)}
        status = "exactly the kept events" if back == expected else "MISMATCH"
        print(
            f"{kind}: {info['recordings']} recordings, "
            f"{info['events_after']}/{info['events_before']} events kept "
            f"({100 * info['events_kept']:.1f} %); N-MNIST bytes {info['bin_bytes_before']} -> "
            f"{info['bin_bytes_after']} ({info['bin_ratio']:.2f}x); {path.name} {info['archive_bytes']} "
            f"bytes ({info['archive_ratio']:.2f}x the raw N-MNIST files; lossless .tar.{info['compressor']} "
            f"of every event {info['lossless_bytes']} bytes, {info['lossless_ratio']:.2f}x); read back: "
            f"{status}; wrote {path}"
        )
        if back != expected:
            return 1
    return 0


def _experiment(args: argparse.Namespace) -> int:
    from spikeshield.sampling.experiment import load_sampling_plan, markdown, shrink_sampling_plan
    from spikeshield.sampling.grid import run_sampling_plan

    flags = {k: getattr(args, k) for k in ("seeds", "datasets", "limit_train", "limit_test", "epochs")}
    plan = shrink_sampling_plan(load_sampling_plan(args.file), **flags)
    if args.dry_run:
        for dataset in plan.datasets:
            for seed in plan.seeds:
                print(f"{dataset:14s} seed {seed}: {', '.join(plan.masks)} at rates {plan.rates}")
        if plan.events:
            for seed in plan.seeds:
                print(
                    f"{plan.events['dataset']:14s} seed {seed}: sampler + classifier; "
                    f"compress at {plan.events['rates']}"
                )
        runs = len(plan.datasets) * len(plan.seeds) * len(plan.masks) + (
            2 * len(plan.seeds) if plan.events else 0
        )
        print(f"{runs} training runs")
        return 0
    summary = run_sampling_plan(
        plan, args.out, data_root=args.data_root, device=args.device, overwrite=args.overwrite,
        command="spikeshield " + " ".join(getattr(args, "argv", [])),
    )  # fmt: skip
    print(markdown(summary))
    print(f"wrote {args.out}/summary.json, table.md, table.csv and figures ({summary['seconds']:.0f}s)")
    return 0
