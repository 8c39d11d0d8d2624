"""How learned neuron constants move during training: KLIF's k and PLIF's τ per layer and epoch.

The trainer records each epoch's values in ``metrics.json`` (see
:mod:`spikeshield.training.traces`); here the runs of an experiment are gathered into mean ±
std over seeds per (dataset, model, variant, layer, constant, epoch), with epoch 0 the value the
neuron starts from (its configured ``k_init`` / τ), and drawn as ``k_trajectory.png`` (one panel
per dataset × model, one line per layer) and ``tau_trajectory.png``; the numbers go to
``neuron_parameters.json``. :func:`write_traces` is called by ``spikeshield experiment``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spikeshield.analysis.plots import save_figure, subplots
from spikeshield.analysis.report import Entry
from spikeshield.io import atomic_write_json
from spikeshield.neurons import neuron_factory
from spikeshield.training.traces import KEY

TRACES_FILE = "neuron_parameters.json"
FIGURES = {"k": "k_trajectory.png", "tau": "tau_trajectory.png"}
SYMBOLS = {"k": "k", "tau": "τ"}


def initial_values(config: dict[str, Any]) -> dict[str, float]:
    """The constants a run's neurons start from: a fresh neuron of its configuration."""
    make = neuron_factory(config["neuron"], time_steps=config.get("time_steps"), **config["neuron_options"])
    return make().learned_values()


def run_traces(config: dict[str, Any], metrics: dict[str, Any]) -> dict[tuple[str, str], list[float]]:
    """``{(layer, constant): [value at epoch 0, 1, ..., E]}`` of one run (empty if it learns none)."""
    start = initial_values(config)
    traces: dict[tuple[str, str], list[float]] = {}
    for record in metrics.get("history", []):
        for layer, values in record.get(KEY, {}).items():
            for name, value in values.items():
                traces.setdefault((layer, name), [start.get(name, float("nan"))]).append(float(value))
    return traces


def trace_rows(entries: Sequence[Entry]) -> list[dict[str, Any]]:
    """Mean ± std over seeds of every traced constant, one row per (dataset, model, variant,
    layer, constant), in the order met; each run counted once however many evaluations it has."""
    groups: dict[tuple[str, str, str, str, str], list[list[float]]] = {}
    seen: set[str] = set()
    for e in entries:
        if e.run in seen or not e.config or not e.metrics:
            continue
        seen.add(e.run)
        for (layer, name), values in run_traces(e.config, e.metrics).items():
            groups.setdefault((e.dataset, e.model, e.variant, layer, name), []).append(values)
    rows = []
    for (dataset, model, variant, layer, name), runs in groups.items():
        epochs = min(len(v) for v in runs)
        columns = [[v[i] for v in runs] for i in range(epochs)]
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "variant": variant,
                "layer": layer,
                "parameter": name,
                "epochs": list(range(epochs)),
                "mean": [statistics.fmean(c) for c in columns],
                "std": [statistics.stdev(c) if len(c) > 1 else 0.0 for c in columns],
                "seeds": len(runs),
            }
        )
    return rows


def write_traces(
    entries: Sequence[Entry], out_dir: str | Path, *, title: str, reduced: Sequence[str] = ()
) -> list[Path]:
    """``neuron_parameters.json`` and one figure per traced constant into ``out_dir``; nothing
    when no run learns a constant. ``reduced`` names datasets trained at a reduced budget
    (labelled so in the figures)."""
    rows = trace_rows(entries)
    if not rows:
        return []
    out = Path(out_dir)
    atomic_write_json(out / TRACES_FILE, {"title": title, "reduced": list(reduced), "rows": rows})
    written = [out / TRACES_FILE]
    for name, filename in FIGURES.items():
        mine = [r for r in rows if r["parameter"] == name]
        figure = _figure(mine, out / filename, title, SYMBOLS[name], set(reduced)) if mine else None
        if figure is not None:  # None: matplotlib is missing (subplots warned once)
            written.append(figure)
    return written


def _figure(
    rows: list[dict[str, Any]], path: Path, title: str, symbol: str, reduced: set[str]
) -> Path | None:
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    models = {d: list(dict.fromkeys(r["model"] for r in rows if r["dataset"] == d)) for d in datasets}
    ncols = max(len(m) for m in models.values())
    made = subplots(
        len(datasets), ncols, figsize=(3.6 * ncols, 2.8 * len(datasets)), squeeze=False, sharex=True
    )
    if made is None:
        return None
    from matplotlib import colormaps

    fig, axes = made
    cmap = colormaps["viridis"]
    for i, dataset in enumerate(datasets):
        for j in range(ncols):
            ax = axes[i][j]
            if j >= len(models[dataset]):
                ax.axis("off")
                continue
            model = models[dataset][j]
            panel = [r for r in rows if r["dataset"] == dataset and r["model"] == model]
            for n, r in enumerate(panel):
                colour = cmap(n / max(1, len(panel) - 1))
                low = [m - s for m, s in zip(r["mean"], r["std"])]
                high = [m + s for m, s in zip(r["mean"], r["std"])]
                ax.plot(
                    r["epochs"],
                    r["mean"],
                    marker="o",
                    ms=3,
                    color=colour,
                    label=f"{r['variant']} {r['layer']}",
                )
                ax.fill_between(r["epochs"], low, high, color=colour, alpha=0.15)
            tag = " — REDUCED (CPU budget)" if dataset in reduced else ""
            ax.set_title(f"{dataset} / {model}{tag}", fontsize=8)
            ax.set_xlabel("epoch", fontsize=8)
            ax.set_xticks(panel[0]["epochs"])
            ax.set_ylabel(symbol, fontsize=8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=5, ncol=2)
    seeds = max(r["seeds"] for r in rows)
    fig.suptitle(
        f"{title}: learned {symbol} per layer (epoch 0: initial value), mean ± std over up to {seeds} seeds",
        fontsize=9,
    )
    fig.tight_layout()
    return save_figure(fig, path)
