"""Accuracy against the number of time steps N: converted networks and BPTT at T = N.

Reads every run below ``ROOT/runs/<dataset>/`` of an experiment folder: a converted run's sweep
(``conversion.json``: accuracy at each N, for each start potential V[0]) and a BPTT run's test
accuracy at its own T (``metrics.json``), all on the runs' fixed test subset. Writes, into ROOT:

* ``steps.json`` — every point as mean ± std over seeds (a conversion's source — the noisy T = 1
  network, the ANN — as a point at N = 1), and the *inference steps needed*: for
  each noise-trained (``multistep``) curve and N, the smallest N at which each ANN-to-SNN curve's
  mean accuracy reaches the same value (None: not within the sweep);
* ``steps.md`` — both as tables;
* ``steps_<dataset>_<model>.png`` — accuracy vs N, log-scaled N, one line ± std per curve.

Run it as ``python -m spikeshield.analysis.conversion ROOT`` after ``spikeshield experiment``.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spikeshield.analysis.plots import save_figure, subplots
from spikeshield.errors import SpikeshieldError, UsageError
from spikeshield.io import atomic_write_json, atomic_write_text, read_json

STEPS_JSON, STEPS_MD = "steps.json", "steps.md"
Key = tuple[str, str, str]  # dataset, model, curve


def _curve_name(run: Path, config: dict[str, Any]) -> str:
    """A run folder ``<model>-<label>-s<seed>`` → ``<label>``."""
    name = run.name.rsplit("-s", 1)[0]
    return name.removeprefix(f"{config['model']}-")


def collect_points(root: Path) -> dict[Key, dict[int, list[float]]]:
    """``{(dataset, model, curve): {N: [accuracy per seed]}}`` of every finished run under ``root``."""
    points: dict[Key, dict[int, list[float]]] = {}
    for run in sorted((root / "runs").glob("*/*")):
        try:
            config = read_json(run / "config.json", "run config")["train"]
            metrics = read_json(run / "metrics.json", "run metrics")
        except (SpikeshieldError, KeyError):
            continue
        if not metrics.get("complete"):
            continue
        curve, base = _curve_name(run, config), (config["dataset"], config["model"])
        if (run / "conversion.json").is_file():
            record = read_json(run / "conversion.json", "conversion record")
            neuron = record["neuron_options"]
            own = neuron.get("v_init", 0.0) / neuron.get("v_threshold", 1.0)
            if record.get("source_test_accuracy") is not None:  # the trained source, drawn at N = 1
                source = points.setdefault((*base, f"{curve}: its source"), {})
                source.setdefault(1, []).append(record["source_test_accuracy"])
            for row in record["sweep"]:
                v_init = row.get("v_init", own)
                label = curve if v_init == own else f"{curve} (V[0]={v_init:g}·V_th)"
                by_n = points.setdefault((*base, label), {})
                by_n.setdefault(row["time_steps"], []).append(row["accuracy"])
        elif config.get("mode", "bptt") == "bptt":
            label = f"BPTT at T = N ({config['neuron']})"
            points.setdefault((*base, label), {}).setdefault(config["time_steps"], []).append(
                metrics["test_accuracy"]
            )
    return points


def _methods(root: Path) -> dict[str, str]:
    """Curve name → conversion method, for the runs that are conversions."""
    methods = {}
    for path in (root / "runs").glob("*/*/conversion.json"):
        with_config = read_json(path.parent / "config.json", "run config")["train"]
        methods[_curve_name(path.parent, with_config)] = read_json(path, "conversion record")["method"]
    return methods


def _stats(values: list[float]) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "seeds": len(values),
    }


def needed_steps(
    curves: dict[str, dict[int, dict[str, Any]]], methods: dict[str, str]
) -> list[dict[str, Any]]:
    """For each noise-trained curve and N: the smallest N' at which each ANN-to-SNN curve's mean
    accuracy is at least as high (None if no N' of its sweep is)."""
    rows = []
    ann = [c for c in curves if methods.get(c.split(" (")[0]) == "ann2snn"]
    for curve, by_n in curves.items():
        if methods.get(curve.split(" (")[0]) != "multistep":
            continue
        for n, point in sorted(by_n.items()):
            for other in ann:
                reach = [m for m, p in sorted(curves[other].items()) if p["mean"] >= point["mean"]]
                rows.append({"curve": curve, "time_steps": n, "accuracy": point["mean"], "baseline": other,
                             "baseline_steps": reach[0] if reach else None})  # fmt: skip
    return rows


def steps_summary(root: str | Path, reduced: Sequence[str] | None = None) -> dict[str, Any]:
    """Mean ± std over seeds of accuracy vs N per (dataset, model, curve), and the steps needed.

    ``reduced``: datasets run at a reduced budget (default: read from ``ROOT/summary.json``).

    Raises:
        UsageError: ``root`` holds no finished runs.
    """
    root = Path(root)
    points = collect_points(root)
    if not points:
        raise UsageError(f"{root} holds no finished runs (expected ROOT/runs/<dataset>/<run>/)")
    if reduced is None and (root / "summary.json").is_file():
        saved = read_json(root / "summary.json", "experiment summary")
        reduced = [d["name"] for d in saved.get("datasets", []) if d.get("reduced")]
    methods = _methods(root)
    panels: dict[str, Any] = {}
    for (dataset, model, curve), by_n in points.items():
        panel = panels.setdefault(f"{dataset}/{model}", {"dataset": dataset, "model": model, "curves": {}})
        panel["curves"][curve] = {n: _stats(v) for n, v in sorted(by_n.items())}
    for panel in panels.values():
        panel["reduced"] = panel["dataset"] in (reduced or [])
        panel["needed"] = needed_steps(panel["curves"], methods)
    return {"format": "spikeshield-steps", "root": str(root), "panels": list(panels.values())}


def _cell(point: dict[str, Any] | None) -> str:
    if point is None:
        return ""
    return f"{100 * point['mean']:.1f}" + (f" ± {100 * point['std']:.1f}" if point["seeds"] > 1 else "")


def steps_markdown(summary: dict[str, Any]) -> str:
    lines = ["# Accuracy vs time steps N", ""]
    for panel in summary["panels"]:
        tag = " — REDUCED (CPU budget)" if panel["reduced"] else ""
        steps = sorted({n for c in panel["curves"].values() for n in c})
        lines += [f"## {panel['dataset']} / {panel['model']}{tag}", "",
                  "Test accuracy % on the runs' fixed test subset, mean ± std over seeds.", "",
                  "| curve | " + " | ".join(f"N = {n}" for n in steps) + " |",
                  "|---|" + "---|" * len(steps)]  # fmt: skip
        for curve, by_n in panel["curves"].items():
            lines.append(f"| {curve} | " + " | ".join(_cell(by_n.get(n)) for n in steps) + " |")
        if panel["needed"]:
            lines += ["", "Steps N' an ANN-to-SNN curve needs to match a noise-trained curve at N:", "",
                      "| noise-trained curve | N | accuracy % | ANN-to-SNN curve | its N for that accuracy |",
                      "|---|---|---|---|---|"]  # fmt: skip
            for row in panel["needed"]:
                reach = row["baseline_steps"] if row["baseline_steps"] is not None else "> sweep"
                lines.append(f"| {row['curve']} | {row['time_steps']} | {100 * row['accuracy']:.1f} | "
                             f"{row['baseline']} | {reach} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def plot_steps(panel: dict[str, Any], path: Path) -> Path | None:
    made = subplots(figsize=(6.4, 4.2))
    if made is None:
        return None
    fig, ax = made
    for curve, by_n in panel["curves"].items():
        ns = sorted(by_n)
        ax.errorbar(ns, [100 * by_n[n]["mean"] for n in ns], yerr=[100 * by_n[n]["std"] for n in ns],
                    marker="o", ms=4, capsize=3, label=curve)  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xlabel("time steps N")
    ax.set_ylabel("test accuracy (%)")
    tag = " — REDUCED (CPU budget)" if panel["reduced"] else ""
    ax.set_title(f"{panel['dataset']} / {panel['model']}{tag}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def write_steps(root: str | Path) -> list[Path]:
    """Write ``steps.json``, ``steps.md`` and one PNG per dataset × model into ``root``."""
    root = Path(root)
    summary = steps_summary(root)
    atomic_write_json(root / STEPS_JSON, summary)
    atomic_write_text(root / STEPS_MD, steps_markdown(summary))
    files = [root / STEPS_JSON, root / STEPS_MD]
    for panel in summary["panels"]:
        png = plot_steps(panel, root / f"steps_{panel['dataset']}_{panel['model']}.png")
        files += [png] if png else []
    return files


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m spikeshield.analysis.conversion EXPERIMENT_FOLDER", file=sys.stderr)
        return 2
    try:
        files = write_steps(args[0])
    except SpikeshieldError as exc:
        print(f"spikeshield: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
