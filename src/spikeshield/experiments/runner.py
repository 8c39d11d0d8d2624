"""``spikeshield experiment FILE``: train and evaluate a grid of runs from one definition file.

An experiment is a TOML file (``experiments/*.toml``) naming datasets, models, neurons, seeds,
one training budget per dataset and one evaluation protocol (noise sweeps, attacks, ε sweeps,
attacker gradients). Every (dataset, model, neuron, seed) is trained into its own run folder,
then evaluated once per attacker gradient; the runs are aggregated into a table of mean ± std
over seeds (markdown, CSV, JSON) and one figure per dataset × model.

The runner is resumable: a complete run is not retrained, an evaluation whose file exists with
the same settings is not redone, and an interrupted training continues from its last complete
epoch. Rerunning the same command after a crash finishes the job.

Example file (see ``experiments/linear_leak.toml``)::

    name = "linear-leak"
    seeds = [0, 1, 2]
    models = ["mlp", "cnn"]

    [neurons.if]
    neuron = "if"
    [neurons.linear-lif]
    neuron = "linear-lif"
    options = { leak = 0.1 }

    [datasets.mnist]
    budget = "1 epoch on 6000 training images"
    train = { epochs = 1, limit_train = 6000 }
    eps = [0.0, 0.05, 0.1, 0.2]

    [evaluate]
    attacks = ["fgsm", "pgd"]
    gradients = ["bptt", "surrogate:atan:2"]
    noises = { gaussian = [0.0, 0.2, 0.4] }
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spikeshield.analysis.plots import pyplot, save_figure
from spikeshield.analysis.robustness import write_robustness
from spikeshield.attacks import ATTACKS, CORRUPTIONS, build_attack, evaluate_robustness
from spikeshield.attacks.gradient import resolve_gradient
from spikeshield.data import DATASETS, load_dataset
from spikeshield.errors import SpikeshieldError, UsageError
from spikeshield.experiments.robustness import environment, load_run
from spikeshield.io import atomic_write_json, atomic_write_text, ensure_dir, read_json
from spikeshield.models import MODELS
from spikeshield.neurons import NEURONS
from spikeshield.training import TrainConfig, resolve_device, train
from spikeshield.training.trainer import METRICS_FILE

TOP_KEYS = {
    "name",
    "description",
    "claim",
    "seeds",
    "models",
    "model_options",
    "neurons",
    "train",
    "datasets",
    "evaluate",
}
EVAL_KEYS = {"attacks", "gradients", "noises", "steps", "limit", "batch_size", "check_samples", "eps", "norm"}
DATASET_KEYS = {"budget", "reduced", "train", "eps", "evaluate"}


@dataclass
class DatasetPlan:
    """One dataset's training budget and evaluation settings."""

    name: str
    budget: str
    reduced: bool
    train: dict[str, Any]
    evaluate: dict[str, Any]


@dataclass
class Experiment:
    """A parsed, validated experiment definition."""

    name: str
    path: Path
    claim: str
    seeds: list[int]
    models: list[str]
    model_options: dict[str, dict[str, Any]]
    neurons: dict[str, dict[str, Any]]
    datasets: list[DatasetPlan]
    source_text: str = field(repr=False, default="")

    def runs(self) -> list[tuple[DatasetPlan, str, str, int]]:
        return [
            (d, m, n, s) for d in self.datasets for m in self.models for n in self.neurons for s in self.seeds
        ]


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"{where} must be a table, got {type(value).__name__}")
    return value


def _unknown(keys: Sequence[str], allowed: set[str], where: str) -> None:
    extra = sorted(set(keys) - allowed)
    if extra:
        raise UsageError(f"{where}: unknown key(s) {', '.join(extra)}; allowed: {', '.join(sorted(allowed))}")


def load_experiment(path: str | Path) -> Experiment:
    """Read and check an experiment file; every name is resolved before anything runs."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"experiment file {path} not found")
    if path.suffix.lower() != ".toml":
        raise UsageError(f"{path}: experiment files are TOML (.toml)")
    text = path.read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    _unknown(list(raw), TOP_KEYS, str(path))
    for key in ("name", "seeds", "models", "neurons", "datasets"):
        if key not in raw:
            raise UsageError(f"{path}: missing required key '{key}'")
    seeds = raw["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise UsageError(f"{path}: seeds must be a non-empty list of integers >= 0")
    models = raw["models"]
    if not isinstance(models, list) or not models:
        raise UsageError(f"{path}: models must be a non-empty list of model names")
    for m in models:
        MODELS.get(m)
    model_options = {k: _table(v, f"model_options.{k}") for k, v in raw.get("model_options", {}).items()}
    neurons: dict[str, dict[str, Any]] = {}
    for label, spec in _table(raw["neurons"], "neurons").items():
        spec = _table(spec, f"neurons.{label}")
        _unknown(list(spec), {"neuron", "options"}, f"neurons.{label}")
        NEURONS.get(spec.get("neuron", label))
        neurons[label] = {"neuron": spec.get("neuron", label), "options": dict(spec.get("options", {}))}
    evaluate = _table(raw.get("evaluate", {}), "evaluate")
    _unknown(list(evaluate), EVAL_KEYS, "evaluate")
    base_train = _table(raw.get("train", {}), "train")
    plans = []
    for name, spec in _table(raw["datasets"], "datasets").items():
        spec = _table(spec, f"datasets.{name}")
        _unknown(list(spec), DATASET_KEYS, f"datasets.{name}")
        DATASETS.get(name)
        ev = {**evaluate, **_table(spec.get("evaluate", {}), f"datasets.{name}.evaluate")}
        if "eps" in spec:
            ev["eps"] = spec["eps"]
        _unknown(list(ev), EVAL_KEYS, f"datasets.{name}.evaluate")
        for attack in ev.get("attacks", []):
            ATTACKS.get(attack)
            if attack == "transfer":
                raise UsageError(
                    f"datasets.{name}: the transfer attack needs a source model, which experiment files "
                    "cannot name yet; run 'spikeshield evaluate --attack transfer' on the runs instead"
                )
        for noise in ev.get("noises", {}):
            CORRUPTIONS.get(noise)
        for gradient in ev.get("gradients", ["bptt"]):
            resolve_gradient(gradient)
        for e in ev.get("eps", []):
            if not isinstance(e, (int, float)) or not math.isfinite(e) or e < 0:
                raise UsageError(f"datasets.{name}: eps must be finite and >= 0, got {e!r}")
        plans.append(
            DatasetPlan(
                name=name,
                budget=str(spec.get("budget", "")),
                reduced=bool(spec.get("reduced", False)),
                train={**base_train, **_table(spec.get("train", {}), f"datasets.{name}.train")},
                evaluate=ev,
            )
        )
    exp = Experiment(
        name=str(raw["name"]),
        path=path,
        claim=str(raw.get("claim", "")),
        seeds=list(seeds),
        models=list(models),
        model_options=model_options,
        neurons=neurons,
        datasets=plans,
        source_text=text,
    )
    for plan, model, label, seed in exp.runs():  # every config must be valid before anything runs
        train_config(exp, plan, model, label, seed, data_root=None)
    return exp


def train_config(
    exp: Experiment,
    plan: DatasetPlan,
    model: str,
    label: str,
    seed: int,
    data_root: str | None,
    device: str = "auto",
) -> TrainConfig:
    neuron = exp.neurons[label]
    fields = dict(plan.train)
    unknown = sorted(set(fields) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise UsageError(f"datasets.{plan.name}.train: unknown setting(s) {', '.join(unknown)}")
    return TrainConfig(
        dataset=plan.name,
        model=model,
        neuron=neuron["neuron"],
        neuron_options=dict(neuron["options"]),
        model_options=dict(exp.model_options.get(model, {})),
        seed=seed,
        data_root=data_root,
        device=device,
        **fields,
    )


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text)


def _settings_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def evaluate_one(
    run_dir: Path,
    plan: DatasetPlan,
    gradient: str,
    with_noise: bool,
    *,
    data_root: str | None,
    device: str,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Evaluate one run under one attacker gradient (noise sweeps only with the first)."""
    ev = plan.evaluate
    settings = {
        "gradient": gradient,
        "attacks": list(ev.get("attacks", [])),
        "eps": [float(e) for e in ev.get("eps", [])],
        "norm": ev.get("norm", "linf"),
        "steps": int(ev.get("steps", 10)),
        "noises": {k: [float(v) for v in levels] for k, levels in ev.get("noises", {}).items()}
        if with_noise
        else {},
        "limit": ev.get("limit"),
        "check_samples": int(ev.get("check_samples", 200)),
        "seed": 0,
    }
    out = run_dir / f"robustness-{_slug(gradient)}"
    done = out / "robustness.json"
    if done.exists():
        try:
            saved = read_json(done, "evaluation")
            if saved.get("experiment_settings_hash") == _settings_hash(settings):
                return saved
        except SpikeshieldError:  # unreadable: redo it
            pass
    config, model = load_run(run_dir)
    dev = resolve_device(device)
    model.to(dev)
    test_set = load_dataset(
        config.dataset, "test", data_root, limit=settings["limit"], **config.dataset_options
    )
    attacks = [  # strict=False: FGSM has no steps
        build_attack(name, strict=False, eps=0.0, norm=settings["norm"], steps=settings["steps"])
        for name in settings["attacks"]
    ]
    result = evaluate_robustness(
        model,
        test_set,
        attacks=attacks,
        eps=settings["eps"],
        noises=settings["noises"],
        gradient=gradient,
        seed=settings["seed"],
        batch_size=int(ev.get("batch_size", 256)),
        device=dev,
        check_samples=settings["check_samples"],
        progress=None,
        log=log,
    )
    result = {
        "run": str(run_dir),
        "model": model.spec,
        "dataset": config.dataset,
        "limit": settings["limit"],
        **result,
        "experiment_settings": settings,
        "experiment_settings_hash": _settings_hash(settings),
    }
    write_robustness(
        result, out, title=f"{config.model}/{config.neuron} on {config.dataset}, gradient {gradient}"
    )
    return result


def run_experiment(
    path: str | Path,
    out_dir: str | Path,
    *,
    data_root: str | None = None,
    device: str = "auto",
    only_datasets: Sequence[str] | None = None,
    command: str = "",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train and evaluate every run of the experiment, then aggregate; returns the summary."""
    exp = load_experiment(path)
    if only_datasets:
        names = [d.name for d in exp.datasets]
        for d in only_datasets:
            if d not in names:
                raise UsageError(f"--dataset {d!r} is not in {exp.path} (it has: {', '.join(names)})")
        exp.datasets = [d for d in exp.datasets if d.name in only_datasets]
    out = ensure_dir(out_dir)
    runs = exp.runs()
    started = time.perf_counter()
    for i, (plan, model, label, seed) in enumerate(runs, 1):
        run_dir = out / "runs" / plan.name / f"{model}-{label}-s{seed}"
        config = train_config(exp, plan, model, label, seed, data_root, device)
        elapsed = time.perf_counter() - started
        log(f"[{i}/{len(runs)}] {plan.name} {model} {label} seed {seed} ({elapsed:.0f}s so far)")
        metrics = train(config, run_dir, resume=True, log=lambda m: None)
        if not metrics.get("complete"):
            raise UsageError(f"{run_dir}: training did not complete")
        for k, gradient in enumerate(plan.evaluate.get("gradients", ["bptt"])):
            evaluate_one(
                run_dir,
                plan,
                gradient,
                with_noise=k == 0,
                data_root=data_root,
                device=device,
                log=lambda m: None,
            )
    summary = aggregate(exp, out)
    env = environment()
    summary.update(
        command=command,
        source_commit=env.get("source_commit"),
        environment=env,
        experiment_file=str(exp.path),
        experiment_definition=exp.source_text,
        seconds=time.perf_counter() - started,
    )
    write_summary(summary, out)
    return summary


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(exp: Experiment, out: Path) -> dict[str, Any]:
    """Mean ± std over seeds of every (dataset, model, neuron, perturbation, level)."""
    cells: dict[tuple[str, str, str, str, str, float], list[float]] = {}
    clean: dict[tuple[str, str, str], list[float]] = {}
    checks: list[dict[str, Any]] = []
    for plan, model, label, seed in exp.runs():
        run_dir = out / "runs" / plan.name / f"{model}-{label}-s{seed}"
        metrics = read_json(run_dir / METRICS_FILE, "run metrics")
        clean.setdefault((plan.name, model, label), []).append(float(metrics["test_accuracy"]))
        for gradient in plan.evaluate.get("gradients", ["bptt"]):
            result = read_json(run_dir / f"robustness-{_slug(gradient)}" / "robustness.json", "evaluation")
            checks.append(
                {
                    "run": str(run_dir.relative_to(out)),
                    "gradient": gradient,
                    "gradient_masking_suspected": result.get("gradient_masking_suspected"),
                    "failed": [
                        f"{c.get('check')}: {c.get('detail')}"
                        for c in result.get("checks", [])
                        if c.get("status") == "fail"
                    ],
                }
            )
            for r in result["records"]:
                if r["kind"] == "attack":
                    key = (plan.name, model, label, f"{r['attack']} ({gradient})", gradient, float(r["eps"]))
                else:
                    key = (plan.name, model, label, r["noise"], "", float(r["level"]))
                cells.setdefault(key, []).append(float(r["accuracy"]))
    rows = []
    for (dataset, model, label, perturbation, _gradient, level), values in sorted(cells.items()):
        mean, std = _mean_std(values)
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "neuron": label,
                "perturbation": perturbation,
                "level": level,
                "mean": mean,
                "std": std,
                "seeds": len(values),
            }
        )
    clean_rows = []
    for (dataset, model, label), values in sorted(clean.items()):
        mean, std = _mean_std(values)
        clean_rows.append(
            {
                "dataset": dataset,
                "model": model,
                "neuron": label,
                "mean": mean,
                "std": std,
                "seeds": len(values),
            }
        )
    return {
        "format": "spikeshield-experiment",
        "format_version": 1,
        "name": exp.name,
        "claim": exp.claim,
        "seeds": exp.seeds,
        "models": exp.models,
        "neurons": exp.neurons,
        "datasets": [
            {
                "name": d.name,
                "budget": d.budget,
                "reduced": d.reduced,
                "train": d.train,
                "evaluate": d.evaluate,
            }
            for d in exp.datasets
        ],
        "clean": clean_rows,
        "rows": rows,
        "verdicts": verdicts(rows, list(exp.neurons)),
        "checks": checks,
    }


def verdicts(rows: list[dict[str, Any]], neurons: list[str]) -> list[dict[str, Any]]:
    """Per dataset × model × perturbation and neuron: the mean accuracy over the non-zero levels,
    and the same relative to the neuron's clean accuracy on the evaluated subset (its level-0
    row), so a neuron that simply trained better does not look more robust. ``best`` is the
    neuron with the highest mean accuracy, ``best_retained`` the one that keeps the largest
    fraction; ``clear`` says whether ``best``'s margin exceeds the seeds' std."""
    groups: dict[tuple[str, str, str], dict[str, list[tuple[float, float]]]] = {}
    clean: dict[tuple[str, str, str, str], float] = {}
    for r in rows:
        key = (r["dataset"], r["model"], r["perturbation"])
        if r["level"] == 0:
            clean[(*key, r["neuron"])] = r["mean"]
            continue
        groups.setdefault(key, {}).setdefault(r["neuron"], []).append((r["mean"], r["std"]))
    out = []
    for key, by_neuron in sorted(groups.items()):
        area = {n: statistics.fmean(m for m, _ in v) for n, v in by_neuron.items()}
        spread = {n: statistics.fmean(s for _, s in v) for n, v in by_neuron.items()}
        retained = {n: area[n] / clean[(*key, n)] for n in area if clean.get((*key, n))}
        best = max(area, key=lambda n: area[n])
        runner_up = max((n for n in area if n != best), key=lambda n: area[n], default=None)
        margin = area[best] - area[runner_up] if runner_up else 0.0
        noise = max(spread[best], spread[runner_up]) if runner_up else 0.0
        out.append(
            {
                "dataset": key[0],
                "model": key[1],
                "perturbation": key[2],
                "mean_accuracy_over_levels": area,
                "clean_accuracy_on_subset": {n: clean.get((*key, n)) for n in area},
                "retained_fraction": retained,
                "best": best,
                "best_retained": max(retained, key=lambda n: retained[n]) if retained else None,
                "margin": margin,
                "clear": margin > noise,
            }
        )
    return out


def _fmt(mean: float, std: float) -> str:
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def markdown_table(summary: dict[str, Any]) -> str:
    """One table per dataset: rows = model × perturbation × level, columns = neurons."""
    neurons = list(summary["neurons"])
    lines: list[str] = []
    for d in summary["datasets"]:
        lines.append(f"### {d['name']}" + (" — REDUCED CPU BUDGET, not paper scale" if d["reduced"] else ""))
        if d["budget"]:
            lines.append(f"Budget: {d['budget']}. Accuracy % (mean ± std over seeds {summary['seeds']}).")
        lines.append("")
        lines.append("| model | perturbation | level | " + " | ".join(neurons) + " |")
        lines.append("|---|---|---|" + "---|" * len(neurons))
        for model in summary["models"]:
            cl = {
                r["neuron"]: r for r in summary["clean"] if r["dataset"] == d["name"] and r["model"] == model
            }
            lines.append(
                f"| {model} | clean (full test set) | | "
                + " | ".join(_fmt(cl[n]["mean"], cl[n]["std"]) if n in cl else "" for n in neurons)
                + " |"
            )
            cells: dict[tuple[str, float], dict[str, dict[str, Any]]] = {}
            for r in summary["rows"]:
                if r["dataset"] == d["name"] and r["model"] == model:
                    cells.setdefault((r["perturbation"], r["level"]), {})[r["neuron"]] = r
            for (perturbation, level), by in sorted(cells.items(), key=lambda kv: ("(" in kv[0][0], kv[0])):
                if level == 0 and "(" in perturbation:
                    continue  # ε = 0 equals clean on the evaluated subset (checked)
                lines.append(
                    f"| {model} | {perturbation} | {level:g} | "
                    + " | ".join(_fmt(by[n]["mean"], by[n]["std"]) if n in by else "" for n in neurons)
                    + " |"
                )
        lines.append("")
    flagged = [c for c in summary["checks"] if c["gradient_masking_suspected"] or c["failed"]]
    lines.append("### Gradient-masking checks")
    lines.append("")
    lines.append(
        f"{len(summary['checks']) - len(flagged)} of {len(summary['checks'])} evaluations passed every check."
        + (" Flagged:" if flagged else "")
    )
    for c in flagged:
        lines.append(
            f"- `{c['run']}` ({c['gradient']}): " + "; ".join(c["failed"] or ["gradient masking suspected"])
        )
    lines.append("")
    lines.append("### Which neuron is most robust (mean accuracy over the non-zero levels)")
    lines.append("")
    lines.append(
        "Mean accuracy % over the non-zero levels per neuron (retained fraction of its clean "
        "accuracy on the same subset in brackets)."
    )
    lines.append("")
    neurons = list(summary["neurons"])
    lines.append(
        "| dataset | model | perturbation | "
        + " | ".join(neurons)
        + " | best | margin (points) | beyond seed std | keeps most |"
    )
    lines.append("|---|---|---|" + "---|" * len(neurons) + "---|---|---|---|")
    for v in summary["verdicts"]:
        cells = [
            f"{100 * v['mean_accuracy_over_levels'][n]:.1f} "
            f"({v['retained_fraction'].get(n, float('nan')):.2f})"
            if n in v["mean_accuracy_over_levels"]
            else ""
            for n in neurons
        ]
        lines.append(
            f"| {v['dataset']} | {v['model']} | {v['perturbation']} | "
            + " | ".join(cells)
            + f" | {v['best']} | {100 * v['margin']:.1f} | {'yes' if v['clear'] else 'no'} | "
            f"{v['best_retained']} |"
        )
    return "\n".join(lines) + "\n"


def plot_summary(summary: dict[str, Any], out: Path) -> list[Path]:
    """One figure per dataset × model: a panel per perturbation, a line (± std) per neuron."""
    plt = pyplot()
    if plt is None:
        return []
    written = []
    for d in summary["datasets"]:
        for model in summary["models"]:
            rows = [r for r in summary["rows"] if r["dataset"] == d["name"] and r["model"] == model]
            perturbations = list(dict.fromkeys(r["perturbation"] for r in rows))
            if not perturbations:
                continue
            cols = min(4, len(perturbations))
            nrows = math.ceil(len(perturbations) / cols)
            fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 3.0 * nrows), squeeze=False)
            for ax, perturbation in zip(axes.flat, perturbations, strict=False):
                for neuron in summary["neurons"]:
                    pts = sorted(
                        (r["level"], r["mean"], r["std"])
                        for r in rows
                        if r["perturbation"] == perturbation and r["neuron"] == neuron
                    )
                    if pts:
                        xs, ys, es = zip(*pts, strict=True)
                        ax.errorbar(xs, ys, yerr=es, marker="o", ms=3, capsize=2, label=neuron)
                ax.set_title(perturbation, fontsize=9)
                ax.set_xlabel("ε" if "(" in perturbation else "level", fontsize=8)
                ax.set_ylim(0, 1)
                ax.grid(alpha=0.3)
            for ax in list(axes.flat)[len(perturbations) :]:
                ax.axis("off")
            axes.flat[0].set_ylabel("accuracy")
            axes.flat[0].legend(fontsize=8)
            tag = " (reduced CPU budget)" if d["reduced"] else ""
            fig.suptitle(
                f"{summary['name']}: {d['name']} / {model}{tag}, "
                f"mean ± std over {len(summary['seeds'])} seeds"
            )
            fig.tight_layout()
            written.append(save_figure(fig, out / f"{d['name']}_{model}.png"))
    return written


def write_summary(summary: dict[str, Any], out: Path) -> list[Path]:
    table = markdown_table(summary)
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "table.md", table)
    header = "dataset,model,neuron,perturbation,level,mean,std,seeds"
    csv = [header] + [
        f'{r["dataset"]},{r["model"]},{r["neuron"]},"{r["perturbation"]}",{r["level"]},{r["mean"]:.6f},{r["std"]:.6f},{r["seeds"]}'
        for r in summary["rows"]
    ]
    atomic_write_text(out / "table.csv", "\n".join(csv) + "\n")
    if summary.get("command"):
        atomic_write_text(out / "COMMAND", f"{summary['command']}\n# commit {summary.get('source_commit')}\n")
    return [out / "summary.json", out / "table.md", out / "table.csv", *plot_summary(summary, out)]


__all__ = ["Experiment", "aggregate", "load_experiment", "markdown_table", "run_experiment"]
