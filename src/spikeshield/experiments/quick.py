"""``spikeshield run``: the quick default job on the embedded digits set.

Trains IF, exponential LIF and linear-leak LIF with the same network, budget and seeds, then
compares clean accuracy with accuracy under Gaussian input noise of increasing σ and under
FGSM and PGD (L∞, BPTT through each neuron's own surrogate) of increasing ε, with the
gradient-masking checks. Writes ``results.json``, ``results.csv``, ``noise.png``, ``attacks.csv``,
``attacks.png`` and one run folder per neuron and seed (each with its ``robustness.json``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from spikeshield.analysis import format_table, plot_curves, table_to_csv
from spikeshield.analysis.robustness import write_robustness
from spikeshield.attacks import build_attack, evaluate_robustness
from spikeshield.attacks.noise import corrupt
from spikeshield.data import dataset_info, load_dataset
from spikeshield.io import atomic_write_json, atomic_write_text, ensure_dir
from spikeshield.streams import SampleStreams
from spikeshield.training import TrainConfig, accuracy, build_model_for, load_model_weights, train
from spikeshield.training.trainer import MODEL_FILE

DEFAULT_NEURONS = ("if", "lif", "linear-lif")
DEFAULT_SIGMAS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
DEFAULT_ATTACKS = ("fgsm", "pgd")
DEFAULT_EPS = (0.0, 0.05, 0.1, 0.2)


def _gaussian(sigma: float, seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Gaussian noise for ``accuracy``'s batches (which come in order): each sample's noise from
    its own stream, keyed by the seed and its index, so it does not depend on the batch size."""
    seen = 0

    def transform(x: torch.Tensor) -> torch.Tensor:
        nonlocal seen
        streams = SampleStreams.keyed(seed, range(seen, seen + len(x)), "gaussian", sigma)
        seen += len(x)
        return corrupt("gaussian", x, sigma, streams)

    return transform


def run_quick(
    out_dir: str | Path,
    *,
    neurons: Sequence[str] = DEFAULT_NEURONS,
    model: str = "cnn",
    dataset: str = "digits",
    epochs: int = 30,
    time_steps: int = 4,
    batch_size: int = 64,
    lr: float = 3e-3,
    seeds: Sequence[int] = (0,),
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    surrogate: str = "sigmoid:4",
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    eps: Sequence[float] = DEFAULT_EPS,
    steps: int = 10,
    data_root: str | None = None,
    device: str = "auto",
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train each neuron, evaluate clean, noisy and adversarial accuracy; returns the record."""
    out = ensure_dir(out_dir)
    start = time.perf_counter()
    frames = {"frames": time_steps} if dataset_info(dataset).kind == "events" else {}
    train_set = load_dataset(dataset, "train", data_root, **frames)
    test_set = load_dataset(dataset, "test", data_root, **frames)
    rows: list[dict[str, Any]] = []
    attack_rows: list[dict[str, Any]] = []
    checks: dict[str, dict[str, Any]] = {}
    templates = [build_attack(name, strict=False, steps=steps) for name in attacks]
    for neuron in neurons:
        for seed in seeds:
            options = {"surrogate": surrogate} if neuron != "noisy-if" else {}
            config = TrainConfig(
                dataset=dataset,
                model=model,
                neuron=neuron,
                neuron_options=options,
                time_steps=time_steps,
                epochs=epochs,
                batch_size=batch_size,
                lr=lr,
                seed=seed,
                data_root=data_root,
                device=device,
            )
            run_dir = out / f"{neuron}-seed{seed}"
            log(f"training {neuron} (seed {seed}) on {dataset} …")
            metrics = train(
                config, run_dir, resume=resume, log=lambda _msg: None, datasets=(train_set, test_set)
            )
            net = build_model_for(config)
            load_model_weights(run_dir / MODEL_FILE, net, net.spec)
            for sigma in sigmas:
                acc = accuracy(net, test_set, transform=_gaussian(sigma, 1000 + seed))
                rows.append({"neuron": neuron, "seed": seed, "sigma": sigma, "accuracy": acc})
            clean = next(
                r["accuracy"] for r in rows if r["neuron"] == neuron and r["seed"] == seed and r["sigma"] == 0
            )
            if abs(clean - metrics["test_accuracy"]) > 1e-9:
                raise RuntimeError(
                    f"σ = 0 accuracy {clean} differs from the run's clean accuracy {metrics['test_accuracy']}"
                )
            if templates:
                robust = evaluate_robustness(
                    net,
                    test_set,
                    attacks=templates,
                    eps=eps,
                    seed=1000 + seed,
                    batch_size=512,
                    check_samples=200,
                )
                robust.update(model=net.spec, dataset=dataset, split="test", command="spikeshield run")
                write_robustness(robust, run_dir, title=f"{model}/{neuron} on {dataset}")
                for r in robust["records"]:
                    attack_rows.append(
                        {
                            "neuron": neuron,
                            "seed": seed,
                            "attack": r["attack"],
                            "eps": r["eps"],
                            "accuracy": r["accuracy"],
                        }
                    )
                checks[f"{neuron}-seed{seed}"] = {
                    "gradient_masking_suspected": robust["gradient_masking_suspected"],
                    "checks": robust["checks"],
                    "warnings": robust["warnings"],
                }
                pgd = [r for r in robust["records"] if r["attack"] == "pgd"]
                log(
                    f"  clean {clean:.4f}; PGD at ε={pgd[-1]['eps']:g}: {pgd[-1]['accuracy']:.4f}; "
                    f"train {metrics['train_seconds']:.1f}s, attacks {robust['seconds']:.1f}s"
                    if pgd
                    else f"  clean {clean:.4f}; train {metrics['train_seconds']:.1f}s"
                )
            else:
                log(f"  clean {clean:.4f}; train {metrics['train_seconds']:.1f}s")

    summary = summarise(rows, neurons, sigmas)
    record = {
        "job": "spikeshield run",
        "dataset": dataset,
        "model": model,
        "time_steps": time_steps,
        "epochs": epochs,
        "seeds": list(seeds),
        "surrogate": surrogate,
        "noise": "gaussian, clipped to [0, 1]; level = σ",
        "split": train_set.meta.get("split"),
        "rows": rows,
        "summary": summary,
        "attacks": {
            "names": list(attacks),
            "eps": sorted({r["eps"] for r in attack_rows}),
            "norm": "linf",
            "steps": steps,
            "gradient": "bptt (each neuron's own surrogate)",
            "rows": attack_rows,
            "summary": summarise_attacks(attack_rows, neurons),
            "gradient_masking_checks": checks,
            "honesty": checks,  # deprecated alias of gradient_masking_checks, dropped after 0.2
        },
        "seconds": time.perf_counter() - start,
    }
    atomic_write_json(out / "results.json", record)
    atomic_write_text(out / "results.csv", table_to_csv(summary))
    curves = {
        n: (
            [r["sigma"] for r in summary if r["neuron"] == n],
            [r["mean"] for r in summary if r["neuron"] == n],
        )
        for n in neurons
    }
    errors = {n: [r["std"] for r in summary if r["neuron"] == n] for n in neurons} if len(seeds) > 1 else None
    plot_curves(
        curves,
        out / "noise.png",
        title=f"{model} on {dataset}, T={time_steps}: accuracy under Gaussian noise",
        xlabel="noise σ",
        errors=errors,
    )
    record["table"] = comparison_table(summary, neurons, sigmas)
    if attack_rows:
        attack_summary = record["attacks"]["summary"]
        atomic_write_text(out / "attacks.csv", table_to_csv(attack_summary))
        panels = {
            f"{a} (L∞)": {
                n: (
                    [r["eps"] for r in attack_summary if r["neuron"] == n and r["attack"] == a],
                    [r["mean"] for r in attack_summary if r["neuron"] == n and r["attack"] == a],
                )
                for n in neurons
            }
            for a in dict.fromkeys(r["attack"] for r in attack_summary)
        }
        plot_curves(
            {},
            out / "attacks.png",
            title=f"{model} on {dataset}, T={time_steps}: accuracy under attack (BPTT)",
            xlabel="ε",
            panels=panels,
        )
        record["attack_table"] = attack_table(attack_summary, neurons)
        masking = [k for k, v in checks.items() if v["gradient_masking_suspected"]]
        record["checks_line"] = (
            f"gradient masking suspected for: {', '.join(masking)}"
            if masking
            else "gradient-masking checks: no sign of gradient masking (see results.json)"
        )
    return record


def summarise_attacks(rows: list[dict[str, Any]], neurons: Sequence[str]) -> list[dict[str, Any]]:
    """Mean and std over seeds for each neuron, attack and ε."""
    out = []
    keys = dict.fromkeys((r["attack"], r["eps"]) for r in rows)
    for n in neurons:
        for attack, eps in keys:
            accs = [
                r["accuracy"] for r in rows if r["neuron"] == n and r["attack"] == attack and r["eps"] == eps
            ]
            if accs:
                out.append(
                    {
                        "neuron": n,
                        "attack": attack,
                        "eps": eps,
                        "mean": statistics.fmean(accs),
                        "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                        "seeds": len(accs),
                    }
                )
    return out


def attack_table(summary: list[dict[str, Any]], neurons: Sequence[str]) -> str:
    """Neurons as rows, attack@ε as columns (ε = 0 omitted: it equals clean)."""
    columns = list(dict.fromkeys(f"{r['attack']} ε={r['eps']:g}" for r in summary if r["eps"] > 0))
    rows = []
    for n in neurons:
        row: dict[str, Any] = {"neuron": n}
        for r in summary:
            if r["neuron"] == n and r["eps"] > 0:
                row[f"{r['attack']} ε={r['eps']:g}"] = f"{r['mean']:.3f}" + (
                    f"±{r['std']:.3f}" if r["seeds"] > 1 else ""
                )
        rows.append(row)
    return format_table(rows, ["neuron", *columns])


def summarise(
    rows: list[dict[str, Any]], neurons: Sequence[str], sigmas: Sequence[float]
) -> list[dict[str, Any]]:
    """Mean and std over seeds for each neuron and σ."""
    out = []
    for n in neurons:
        for s in sigmas:
            accs = [r["accuracy"] for r in rows if r["neuron"] == n and r["sigma"] == s]
            out.append(
                {
                    "neuron": n,
                    "sigma": s,
                    "mean": statistics.fmean(accs),
                    "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                    "seeds": len(accs),
                }
            )
    return out


def comparison_table(summary: list[dict[str, Any]], neurons: Sequence[str], sigmas: Sequence[float]) -> str:
    """Neurons as rows, σ as columns (clean first)."""
    rows = []
    for n in neurons:
        row: dict[str, Any] = {"neuron": n}
        for s in sigmas:
            r = next(r for r in summary if r["neuron"] == n and r["sigma"] == s)
            row[str(s)] = f"{r['mean']:.3f}" + (f"±{r['std']:.3f}" if r["seeds"] > 1 else "")
        rows.append(row)
    columns = ["neuron", *[str(s) for s in sigmas]]
    headers = ["neuron", *("clean" if s == 0 else f"σ={s:g}" for s in sigmas)]
    return format_table(rows, columns, headers)
