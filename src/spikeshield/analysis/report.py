"""The one aggregation behind ``spikeshield run``, ``experiment`` and ``report``.

Evaluations of trained runs (their ``robustness.json``) become rows of mean ± std over seeds per
(dataset, model, variant, perturbation, level), a verdict per perturbation on which variant is
most robust, and the check results of every evaluation. Every figure in a caption is what was
recorded: the training budget comes from the runs' ``config.json`` / ``metrics.json``, the
evaluated sample counts from the evaluations. :func:`write_report` writes ``summary.json``,
``table.md``, ``table.csv`` and one PNG per dataset × model.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from spikeshield.analysis.plots import curve_style, format_table, save_figure, subplots
from spikeshield.analysis.robustness import check_results, evaluation_files, read_evaluation, record_label
from spikeshield.errors import DataError
from spikeshield.io import atomic_write_json, atomic_write_text, ensure_dir, read_json
from spikeshield.schema import Fraction, NonNegativeFloat, PositiveInt, check
from spikeshield.training.run_files import CONFIG_FILE, METRICS_FILE, read_metrics, read_run_config

SUMMARY_FILE = "summary.json"
TABLE_FILE = "table.md"
CSV_FILE = "table.csv"
REDUCED = "REDUCED (CPU budget)"
"""How a dataset run at a declared reduced budget is labelled in every table and figure."""
CSV_COLUMNS = ("dataset", "model", "variant", "kind", "perturbation", "level", "mean", "std", "seeds")


@dataclass
class Entry:
    """One evaluation of one trained run, placed in the table as ``variant`` (a column)."""

    dataset: str
    model: str
    variant: str
    seed: int | None
    run: str
    """The run, as it is named in the outputs."""
    result: dict[str, Any]
    """The evaluation (``robustness.json``)."""
    config: dict[str, Any] | None = None
    """The run's training settings (``config.json``'s ``train``), if the run folder is there."""
    metrics: dict[str, Any] | None = None
    """The run's ``metrics.json`` (clean accuracy on its test set, samples, epochs)."""
    tag: str = ""
    """Appended to perturbation names when evaluations of one run with other settings would collide."""


HOLDOUT = "holdout"
"""The tag of evaluations on held-out training samples (validation): ``gaussian {holdout}``."""


def split_tag(split: str | None) -> str:
    """An evaluation's tag from its split: ``holdout`` rows are kept apart from the test rows."""
    return HOLDOUT if split == HOLDOUT else ""


def perturbation(record: dict[str, Any], tag: str = "") -> str:
    """A record's row name: ``gaussian``, ``pgd-10``, ``fgsm [surrogate:atan:2]``, ``pgd-10 L2``.

    A record strengthened by a stronger rerun (the attack had not converged) keeps its attack's
    name, so that seeds are averaged in one row; the row counts such seeds (``strengthened``)."""
    name = record_label({k: v for k, v in record.items() if k != "strengthened"})
    if record["kind"] == "attack" and record.get("norm") == "l2":
        name += " L2"
    return f"{name} {{{tag}}}" if tag else name


def _level(record: dict[str, Any]) -> float:
    return float(record["eps"] if record["kind"] == "attack" else record["level"])


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _stats(key: dict[str, Any], values: list[float]) -> dict[str, Any]:
    mean, std = _mean_std(values)
    return {**key, "mean": mean, "std": std, "seeds": len(values)}


def accuracy_rows(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    """Mean ± std over seeds of every (dataset, model, variant, perturbation, level); noises first."""
    groups: dict[tuple[Any, ...], list[float]] = {}
    strengthened: dict[tuple[Any, ...], int] = {}
    for e in entries:
        for r in e.result["records"]:
            key = (e.dataset, e.model, r["kind"] != "noise", perturbation(r, e.tag), _level(r), e.variant)
            groups.setdefault(key, []).append(float(r["accuracy"]))
            strengthened[key] = strengthened.get(key, 0) + bool(r.get("strengthened"))
    names = ("dataset", "model", "kind", "perturbation", "level", "variant")
    return [
        _stats(
            {
                **dict(zip(names, key)),
                "kind": "attack" if key[2] else "noise",
                "strengthened": strengthened[key],
            },
            values,
        )
        for key, values in sorted(groups.items())
    ]


def clean_rows(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    """Mean ± std over seeds of each variant's clean accuracy on its training's test set."""
    groups: dict[tuple[str, str, str], dict[str, float]] = {}
    for e in entries:
        if e.metrics and e.metrics.get("test_accuracy") is not None:
            groups.setdefault((e.dataset, e.model, e.variant), {})[e.run] = float(e.metrics["test_accuracy"])
    return [
        _stats({"dataset": d, "model": m, "variant": v}, list(runs.values()))
        for (d, m, v), runs in sorted(groups.items())
    ]


def run_rate(e: Entry) -> float | None:
    """The run's measured mean firing rate recorded with the evaluation (None in older ones)."""
    rate = e.result.get("firing_rate")
    return float(rate["mean"]) if isinstance(rate, dict) and "mean" in rate else None


def family(e: Entry) -> str:
    """The neuron model (registry name) of an entry's run: the variants a rate curve connects."""
    return str((e.config or {}).get("neuron") or (e.result.get("model") or {}).get("neuron") or "?")


def is_holdout(e: Entry) -> bool:
    """Whether the entry's evaluation ran on held-out training samples (validation)."""
    return e.result.get("split") == HOLDOUT


def firing_rate_rows(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    """Mean ± std over seeds of each variant's measured mean firing rate (spikes per neuron per
    time step on the evaluated clean test samples; one figure per run)."""
    groups: dict[tuple[str, str, str, str], dict[str, float]] = {}
    for e in entries:
        rate = run_rate(e)
        if rate is not None and not is_holdout(e):
            groups.setdefault((e.dataset, e.model, e.variant, family(e)), {})[e.run] = rate
    return [
        _stats({"dataset": d, "model": m, "variant": v, "family": f}, list(runs.values()))
        for (d, m, v, f), runs in sorted(groups.items())
    ]


def variant_points(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    """Per dataset × model × variant × perturbation, the mean ± std over seeds of each run's
    ``accuracy`` (for ``clean`` the training's test accuracy, else the run's mean over the
    perturbation's non-zero levels) and of its measured firing ``rate`` on the samples of that
    evaluation (None, and ``rate_std`` None, unless every run of the point recorded one)."""
    runs: dict[tuple[str, str, str, str, str], dict[str, tuple[float | None, float]]] = {}
    for e in entries:
        rate, key = run_rate(e), (e.dataset, e.model, e.variant, family(e))
        if e.metrics and e.metrics.get("test_accuracy") is not None and not is_holdout(e):
            runs.setdefault((*key, "clean"), {})[e.run] = (rate, float(e.metrics["test_accuracy"]))
        levels: dict[str, list[float]] = {}
        for r in e.result["records"]:
            if _level(r) > 0:
                levels.setdefault(perturbation(r, e.tag), []).append(float(r["accuracy"]))
        for name, accuracies in levels.items():
            runs.setdefault((*key, name), {})[e.run] = (rate, statistics.fmean(accuracies))
    points = []
    for (d, m, v, f, name), pairs in sorted(runs.items()):
        rates, accuracies = zip(*pairs.values(), strict=True)
        rate, rate_std = _mean_std(list(rates)) if None not in rates else (None, None)
        acc, acc_std = _mean_std(list(accuracies))
        points.append(
            {"dataset": d, "model": m, "variant": v, "family": f, "perturbation": name, "rate": rate,
             "rate_std": rate_std, "accuracy": acc, "accuracy_std": acc_std, "seeds": len(pairs)}
        )  # fmt: skip
    return points


def rate_points(points: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points of :func:`variant_points` with a measured firing rate, on the test samples."""
    return [p for p in points if p["rate"] is not None and f"{{{HOLDOUT}}}" not in p["perturbation"]]


def selections(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each neuron model's setting chosen on held-out training samples (validation), per test
    perturbation P: among the variants of one neuron model (``family``), the one with the highest
    mean accuracy over the non-zero levels of ``P {holdout}``, with its test accuracy on P. The
    variant that would win on the test set itself (an optimistic choice) is named beside it."""
    by = {(p["dataset"], p["model"], p["variant"], p["perturbation"]): p for p in points}
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for p in points:
        held = by.get((p["dataset"], p["model"], p["variant"], f"{p['perturbation']} {{{HOLDOUT}}}"))
        if held is not None:
            groups.setdefault((p["dataset"], p["model"], p["family"], p["perturbation"]), []).append(p)
    out = []
    for (d, m, f, name), tested in groups.items():
        held = {p["variant"]: by[(d, m, p["variant"], f"{name} {{{HOLDOUT}}}")]["accuracy"] for p in tested}
        chosen = max(tested, key=lambda p: held[p["variant"]])
        on_test = max(tested, key=lambda p: p["accuracy"])
        clean = by.get((d, m, chosen["variant"], "clean"))
        out.append(
            {"dataset": d, "model": m, "family": f, "perturbation": name, "candidates": len(tested),
             "chosen": chosen["variant"], "holdout_accuracy": held[chosen["variant"]],
             "test_accuracy": chosen["accuracy"], "test_accuracy_std": chosen["accuracy_std"],
             "seeds": chosen["seeds"], "rate": chosen["rate"], "rate_std": chosen["rate_std"],
             "clean_accuracy": clean["accuracy"] if clean else None,
             "best_on_test": on_test["variant"], "best_on_test_accuracy": on_test["accuracy"]}
        )  # fmt: skip
    return out


MATCH_AXES = ("rate", "clean")
"""What :func:`matched` holds equal: the measured firing rate, or the clean (test) accuracy."""


def matched(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each variant against every other neuron model at the same firing rate, and at the same
    clean accuracy, per test perturbation P (points of :func:`variant_points`).

    The other model's accuracy on P at the variant's x (its rate, or its clean accuracy) is read
    off the piecewise-linear curve through that model's variants sorted by x; a variant outside
    the other model's x range is not compared (no extrapolation). Each row: the x ``axis``, the
    variant, its neuron model (``family``) and x, the ``other`` model, ``accuracy``,
    ``other_accuracy`` and ``difference`` (accuracy − other_accuracy, a fraction)."""
    tested = rate_points(points)
    clean = {(p["dataset"], p["model"], p["variant"]): p["accuracy"] for p in tested if _is_clean(p)}

    def x(p: dict[str, Any], axis: str) -> float | None:
        return p["rate"] if axis == "rate" else clean.get((p["dataset"], p["model"], p["variant"]))

    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for p in tested:
        if p["perturbation"] != "clean":
            groups.setdefault((p["dataset"], p["model"], p["perturbation"]), []).append(p)
    out = []
    for (d, m, name), mine in groups.items():
        families = list(dict.fromkeys(p["family"] for p in mine))
        for axis in MATCH_AXES:
            curves = {f: _curve([q for q in mine if q["family"] == f], axis, x) for f in families}
            for p in mine:
                at = x(p, axis)
                for other in families:
                    level = None if other == p["family"] or at is None else _interpolate(curves[other], at)
                    if level is not None:
                        out.append(
                            {"dataset": d, "model": m, "perturbation": name, "axis": axis,
                             "variant": p["variant"], "family": p["family"], "x": at, "other": other,
                             "accuracy": p["accuracy"], "other_accuracy": level,
                             "difference": p["accuracy"] - level, "seeds": p["seeds"]}
                        )  # fmt: skip
    return out


def _is_clean(point: dict[str, Any]) -> bool:
    return point["perturbation"] == "clean"


def _curve(points: list[dict[str, Any]], axis: str, x: Any) -> list[tuple[float, float]]:
    return sorted((x(p, axis), p["accuracy"]) for p in points if x(p, axis) is not None)


def _interpolate(curve: Sequence[tuple[float, float]], at: float) -> float | None:
    """The piecewise-linear ``curve`` (points sorted by x) at ``at``; None outside its x range."""
    if len(curve) == 1 and curve[0][0] == at:
        return curve[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(curve):
        if x0 <= at <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (at - x0) / (x1 - x0)
    return None


def match_ranges(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per dataset × model × neuron model: the span of its variants' firing rates and clean
    accuracies (what :func:`matched` can compare within)."""
    spans: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    for p in rate_points(points):
        if p["perturbation"] == "clean":
            span_of = spans.setdefault((p["dataset"], p["model"], p["family"]), {"rate": [], "clean": []})
            span_of["rate"].append(p["rate"])
            span_of["clean"].append(p["accuracy"])
    return [
        {"dataset": d, "model": m, "family": f, "variants": len(v["rate"]),
         **{f"{axis}_{end}": fn(v[axis]) for axis in MATCH_AXES for end, fn in (("min", min), ("max", max))}}
        for (d, m, f), v in spans.items()
    ]  # fmt: skip


def _values(items: Iterable[Any]) -> list[Any]:
    return sorted({v for v in items if v is not None}, key=lambda v: (str(type(v)), v))


def measured_budget(entries: Sequence[Entry]) -> dict[str, list[Any]]:
    """What the runs and evaluations of one dataset recorded (each as the sorted distinct values)."""
    configs = [e.config for e in entries if e.config]
    metrics = [e.metrics for e in entries if e.metrics]
    return {
        "epochs": _values(m.get("epochs") for m in metrics),
        "train_samples": _values(m.get("train_samples") for m in metrics),
        "test_samples": _values(m.get("test_samples") for m in metrics),
        "time_steps": _values(c.get("time_steps") for c in configs),
        "optimizer": _values(c.get("optimizer") for c in configs),
        "lr": _values(c.get("lr") for c in configs),
        "schedule": _values(c.get("schedule") for c in configs),
        "batch_size": _values(c.get("batch_size") for c in configs),
        "seeds": _values(e.seed for e in entries),
        "evaluated_samples": _values(e.result.get("samples") for e in entries),
        "evaluation_seed": _values(e.result.get("seed") for e in entries),
    }


def check_rows(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    """Per evaluation: masking suspected (None: not checked) and the failed checks."""
    out = []
    for e in entries:
        checks, suspected = check_results(e.result)
        failed = [f"{c.get('check')}: {c.get('detail')}" for c in checks if c.get("status") == "fail"]
        out.append(
            {
                "run": e.run,
                "gradient": e.result.get("gradient", "bptt"),
                "gradient_masking_suspected": suspected,
                "failed": failed,
                "split": e.result.get("split", "test"),
            }
        )
    return out


def evaluated_clean(entries: Iterable[Entry]) -> dict[tuple[str, str, str, str], float]:
    """Per (dataset, model, perturbation, variant): the mean over seeds of the clean accuracy of
    the evaluations that made the perturbation's rows, on the same samples (what a level 0 would
    measure; evaluations that did not record one are left out)."""
    groups: dict[tuple[str, str, str, str], list[float]] = {}
    for e in entries:
        clean = e.result.get("clean_accuracy")
        if clean is None:
            continue
        for name in dict.fromkeys(perturbation(r, e.tag) for r in e.result["records"]):
            groups.setdefault((e.dataset, e.model, name, e.variant), []).append(float(clean))
    return {key: statistics.fmean(values) for key, values in groups.items()}


def verdicts(
    rows: list[dict[str, Any]], clean: dict[tuple[str, str, str, str], float] | None = None
) -> list[dict[str, Any]]:
    """Per dataset × model × perturbation: each variant's mean accuracy over the non-zero levels,
    and the same relative to its accuracy at level 0 on the same subset (so a variant that simply
    trained better does not look more robust) or, where no level 0 was run (an attack at one ε),
    to ``clean`` (:func:`evaluated_clean`: the clean accuracy on those samples). ``best`` has the
    highest mean, ``best_retained`` keeps the largest fraction (None when no variant has either
    reference); ``clear`` says whether ``best``'s margin over the runner-up exceeds the seeds'
    std (None with fewer than two seeds: there is no spread to compare with)."""
    groups: dict[tuple[str, str, str], dict[str, list[dict[str, Any]]]] = {}
    zero: dict[tuple[str, str, str, str], float] = dict(clean or {})
    for r in rows:
        key = (r["dataset"], r["model"], r["perturbation"])
        if r["level"] == 0:
            zero[(*key, r["variant"])] = r["mean"]
        else:
            groups.setdefault(key, {}).setdefault(r["variant"], []).append(r)
    return [_verdict(key, by, zero) for key, by in sorted(groups.items())]


def _verdict(
    key: tuple[str, str, str], by: dict[str, list[dict[str, Any]]], zero: dict[tuple[str, ...], float]
) -> dict[str, Any]:
    area = {v: statistics.fmean(r["mean"] for r in rs) for v, rs in by.items()}
    spread = {v: statistics.fmean(r["std"] for r in rs) for v, rs in by.items()}
    seeds = min(r["seeds"] for rs in by.values() for r in rs)
    retained = {v: area[v] / zero[(*key, v)] for v in area if zero.get((*key, v))}
    best = max(area, key=lambda v: area[v])
    runner_up = max((v for v in area if v != best), key=lambda v: area[v], default=None)
    margin = area[best] - area[runner_up] if runner_up else 0.0
    noise = max(spread[best], spread[runner_up]) if runner_up else 0.0
    return {
        "dataset": key[0],
        "model": key[1],
        "perturbation": key[2],
        "mean_accuracy_over_levels": area,
        "accuracy_at_level_0": {v: zero.get((*key, v)) for v in area},
        "retained_fraction": retained,
        "best": best,
        "best_retained": max(retained, key=lambda v: retained[v]) if retained else None,
        "margin": margin,
        "seeds": seeds,
        "clear": (margin > noise) if seeds > 1 and runner_up else None,
    }


def aggregate(
    entries: Sequence[Entry],
    *,
    title: str,
    variants: Sequence[str] | None = None,
    notes: Sequence[str] = (),
    reduced: Sequence[str] = (),
    **extra: Any,
) -> dict[str, Any]:
    """The summary of ``entries``: rows, clean rows, firing rates, verdicts, checks and the
    measured budgets.

    ``variants`` orders the columns (default: first appearance); ``notes`` are printed under the
    title; ``reduced`` names datasets run at a declared reduced budget; ``extra`` is recorded as is."""
    order = list(dict.fromkeys(variants or (e.variant for e in entries)))
    rows = accuracy_rows(entries)
    points = variant_points(entries)
    datasets = []
    for name in dict.fromkeys(e.dataset for e in entries):
        mine = [e for e in entries if e.dataset == name]
        datasets.append(
            {
                "name": name,
                "models": list(dict.fromkeys(e.model for e in mine)),
                "reduced": name in reduced,
                "measured": measured_budget(mine),
            }
        )
    return {
        "format": "spikeshield-summary",
        "format_version": 2,
        "title": title,
        "notes": list(notes),
        "variants": [v for v in order if any(e.variant == v for e in entries)],
        "datasets": datasets,
        "clean": clean_rows(entries),
        "firing_rates": firing_rate_rows(entries),
        "points": points,
        "selections": selections(points),
        "matched": matched(points),
        "match_ranges": match_ranges(points),
        "rows": rows,
        "verdicts": verdicts(rows, evaluated_clean(entries)),
        "checks": check_rows(entries),
        **extra,
    }


# ---------------------------------------------------------------------------- markdown and CSV
def span(values: list[Any]) -> str:
    if not values:
        return "?"
    if len(values) == 1 or not all(isinstance(v, (int, float)) for v in values):
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
    return f"{values[0]:g}–{values[-1]:g}"


def budget_caption(measured: dict[str, list[Any]]) -> str:
    """The recorded budget of one dataset, in words (every number from the runs and evaluations)."""
    m = {k: span(v) for k, v in measured.items()}
    trained = (
        f"Trained {m['epochs']} epoch(s) on {m['train_samples']} training samples, T = {m['time_steps']}, "
        f"{m['optimizer']} lr {m['lr']} ({m['schedule']}), batch {m['batch_size']}, seeds {m['seeds']}. "
        if measured["epochs"]
        else ""
    )
    return (
        trained
        + f"Evaluated on {m['evaluated_samples']} test samples (evaluation seed {m['evaluation_seed']})"
        + (
            f"; clean row: the training's test accuracy on {m['test_samples']} samples."
            if measured["test_samples"]
            else "."
        )
    )


def _cell(row: dict[str, Any] | None, scale: float = 100.0, digits: int = 1) -> str:
    if row is None:
        return ""
    text = f"{scale * row['mean']:.{digits}f}"
    text += f" ± {scale * row['std']:.{digits}f}" if row["seeds"] > 1 else ""
    return text + (" †" if row.get("strengthened") else "")


def _dataset_table(summary: dict[str, Any], dataset: dict[str, Any]) -> list[str]:
    variants = summary["variants"]
    name = dataset["name"]
    lines = [
        f"### {name}" + (f" — {REDUCED}, not paper scale" if dataset["reduced"] else ""),
        "",
        budget_caption(dataset["measured"])
        + " Accuracy % (mean ± std over seeds where a cell has several; ε = 0 equals clean, not shown).",
        "",
        "| model | perturbation | level | " + " | ".join(variants) + " |",
        "|---|---|---|" + "---|" * len(variants),
    ]
    for model in dataset["models"]:
        key = (name, model)
        clean = {r["variant"]: r for r in summary["clean"] if r["dataset"] == name and r["model"] == model}
        if clean:
            lines.append(f"| {model} | clean | | " + " | ".join(_cell(clean.get(v)) for v in variants) + " |")
        rate = {r["variant"]: r for r in summary.get("firing_rates", []) if (r["dataset"], r["model"]) == key}
        if rate:
            lines.append(
                f"| {model} | firing rate (spikes/neuron/step) | | "
                + " | ".join(_cell(rate.get(v), 1.0, 3) for v in variants)
                + " |"
            )
        cells: dict[tuple[bool, str, float], dict[str, dict[str, Any]]] = {}
        for r in summary["rows"]:
            if (
                r["dataset"] == name
                and r["model"] == model
                and not (r["kind"] == "attack" and r["level"] == 0)
            ):
                cells.setdefault((r["kind"] != "noise", r["perturbation"], r["level"]), {})[r["variant"]] = r
        for (_, pert, level), by in sorted(cells.items()):
            lines.append(
                f"| {model} | {pert} | {level:g} | " + " | ".join(_cell(by.get(v)) for v in variants) + " |"
            )
    return [*lines, ""]


def _checks_section(checks: list[dict[str, Any]]) -> list[str]:
    unchecked = [c for c in checks if c["gradient_masking_suspected"] is None]
    flagged = [c for c in checks if c["gradient_masking_suspected"] or c["failed"]]
    passed = len(checks) - len(unchecked) - len([c for c in flagged if c not in unchecked])
    lines = ["### Gradient-masking checks", "", f"{passed} of {len(checks)} evaluations passed every check."]
    lines += [
        f"- `{c['run']}` ({c['gradient']}): " + "; ".join(c["failed"] or ["gradient masking suspected"])
        for c in flagged
    ]
    held = [c for c in unchecked if c.get("split") == HOLDOUT]
    lines += [
        f"- `{c['run']}` ({c['gradient']}): not checked (the checks were skipped)"
        for c in unchecked
        if c not in held
    ]
    if held:
        lines.append(
            f"- {len(held)} evaluation(s) on held-out training samples (validation, for choosing "
            "settings) ran without checks by design; the test evaluations of the same runs have them."
        )
    return [*lines, ""]


def _verdict_section(summary: dict[str, Any]) -> list[str]:
    variants = summary["variants"]
    lines = [
        "### Which variant is most robust (mean accuracy over the non-zero levels)",
        "",
        "Mean accuracy % over the non-zero levels (in brackets: the fraction kept of its accuracy at "
        "level 0 on the same samples, or of its clean accuracy on them where no level 0 was run; "
        "n/a: neither was recorded). A margin (–: none) needs two variants; 'beyond seed std' needs "
        "at least two seeds too.",
        "",
        "| dataset | model | perturbation | "
        + " | ".join(variants)
        + " | best | margin (points) | beyond seed std | keeps most |",
        "|---|---|---|" + "---|" * len(variants) + "---|---|---|---|",
    ]
    for v in summary["verdicts"]:
        means, kept = v["mean_accuracy_over_levels"], v["retained_fraction"]
        cells = [
            f"{100 * means[n]:.1f} ({f'{kept[n]:.2f}' if n in kept else 'n/a'})" if n in means else ""
            for n in variants
        ]
        alone = len(means) < 2
        reason = "one variant" if alone else "1 seed"
        clear = {True: "yes", False: "no", None: f"n/a ({reason})"}[v["clear"]]
        margin = "–" if alone else f"{100 * v['margin']:.1f}"
        lines.append(
            f"| {v['dataset']} | {v['model']} | {v['perturbation']} | "
            + " | ".join(cells)
            + f" | {v['best']} | {margin} | {clear} | {v['best_retained'] or 'n/a'} |"
        )
    return lines


def _rate_section(summary: dict[str, Any]) -> list[str]:
    """Per dataset × model: each variant's firing rate beside its clean accuracy and its mean
    accuracy over each perturbation's non-zero levels (mean ± std over seeds)."""
    points = rate_points(summary.get("points", []))
    if not points:
        return []
    lines = [
        "",
        "### Accuracy against firing rate",
        "",
        "Firing rate: spikes per neuron per time step on the evaluated clean samples; clean: the "
        "training's test accuracy %; every other column: mean accuracy % over the non-zero levels "
        "(mean ± std over seeds).",
    ]
    reduced = {d["name"] for d in summary["datasets"] if d["reduced"]}
    for key in dict.fromkeys((p["dataset"], p["model"]) for p in points):
        mine = [p for p in points if (p["dataset"], p["model"]) == key]
        columns = list(dict.fromkeys(p["perturbation"] for p in mine))
        by = {(p["variant"], p["perturbation"]): p for p in mine}
        lines += [
            "",
            f"**{key[0]} / {key[1]}**" + (f" — {REDUCED}" if key[0] in reduced else ""),
            "",
            "| variant | neuron | firing rate | " + " | ".join(columns) + " |",
            "|---|---|---|" + "---|" * len(columns),
        ]
        for variant in [v for v in summary["variants"] if any(p["variant"] == v for p in mine)]:
            first = next(p for p in mine if p["variant"] == variant)
            cells = [_point(by.get((variant, c)), "accuracy", 100.0, 1) for c in columns]
            lines.append(
                f"| {variant} | {first['family']} | {_point(first, 'rate', 1.0, 3)} | "
                + " | ".join(cells)
                + " |"
            )
    return lines


def _selection_section(chosen: list[dict[str, Any]]) -> list[str]:
    if not chosen:
        return []
    lines = [
        "",
        "### Each neuron model's setting chosen on held-out training samples",
        "",
        "Per perturbation, among the variants of one neuron model: the one with the highest mean "
        "accuracy % over the non-zero levels on held-out training samples (validation), then its "
        "test accuracy (mean ± std over seeds), firing rate and clean accuracy; 'best on test' is "
        "the variant the test set itself would pick (an optimistic choice).",
        "",
        "| dataset | model | perturbation | neuron | chosen (of n) | validation | test | firing rate "
        "| clean | best on test |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in chosen:
        test = _point(c, "test_accuracy", 100.0, 1)
        rate = _point(c, "rate", 1.0, 3) if c["rate"] is not None else "?"
        clean = f"{100 * c['clean_accuracy']:.1f}" if c["clean_accuracy"] is not None else "?"
        lines.append(
            f"| {c['dataset']} | {c['model']} | {c['perturbation']} | {c['family']} | "
            f"{c['chosen']} (of {c['candidates']}) | {100 * c['holdout_accuracy']:.1f} | {test} | {rate} | "
            f"{clean} | {c['best_on_test']} ({100 * c['best_on_test_accuracy']:.1f}) |"
        )
    return lines


def _matched_section(rows: list[dict[str, Any]], ranges: list[dict[str, Any]]) -> list[str]:
    if not ranges:
        return []
    lines = [
        "",
        "### At matched firing rate and at matched clean accuracy",
        "",
        "Each variant's accuracy minus another neuron model's at the same firing rate (or the same "
        "clean accuracy), read off the line through that model's variants on either side (mean "
        "over seeds; points of accuracy, mean over the non-zero levels). Outside the other model's "
        "range there is no comparison (no extrapolation). Ranges (rate; clean %):",
        "",
    ]
    for r in ranges:
        lines.append(
            f"- {r['dataset']} / {r['model']} / {r['family']} ({r['variants']} variant(s)): rate "
            f"{_span(r['rate_min'], r['rate_max'], 1.0, 3)}; "
            f"clean {_span(r['clean_min'], r['clean_max'], 100.0, 1)}"
        )
    if not rows:
        return [*lines, "", "No variant lies within another neuron model's range: nothing to compare."]
    for axis, label in (("rate", "firing rate"), ("clean", "clean accuracy")):
        mine = [r for r in rows if r["axis"] == axis]
        columns = list(dict.fromkeys(r["perturbation"] for r in mine))
        keys = list(dict.fromkeys((r["dataset"], r["model"], r["variant"], r["other"]) for r in mine))
        if not keys:
            lines += ["", f"At matched {label}: no variant lies within another neuron model's range."]
            continue
        by = {(r["dataset"], r["model"], r["variant"], r["other"], r["perturbation"]): r for r in mine}
        lines += [
            "",
            f"At matched {label} (difference in points):",
            "",
            f"| dataset | model | variant | {label} | vs | " + " | ".join(columns) + " |",
            "|---|---|---|---|---|" + "---|" * len(columns),
        ]
        for key in keys:
            first = next(r for r in mine if (r["dataset"], r["model"], r["variant"], r["other"]) == key)
            at = f"{first['x']:.3f}" if axis == "rate" else f"{100 * first['x']:.1f}"
            diffs = [by.get((*key, c)) for c in columns]
            cells = [f"{100 * r['difference']:+.1f}" if r else "" for r in diffs]
            lines.append(f"| {' | '.join(key[:3])} | {at} | {key[3]} | " + " | ".join(cells) + " |")
    return lines


def _span(low: float, high: float, scale: float, digits: int) -> str:
    ends = [f"{scale * v:.{digits}f}" for v in dict.fromkeys((low, high))]
    return "–".join(ends)


def _point(point: dict[str, Any] | None, field: str, scale: float, digits: int) -> str:
    """One coordinate (``rate`` or ``accuracy``) of a rate point, as :func:`_cell` writes a row."""
    if point is None:
        return ""
    return _cell({"mean": point[field], "std": point[f"{field}_std"], "seeds": point["seeds"]}, scale, digits)


def markdown(summary: dict[str, Any]) -> str:
    """``table.md``: per dataset one table (rows: model × perturbation × level; columns: variants),
    then the check results and the verdicts."""
    lines = (
        [f"## {summary['title']}", "", *summary["notes"], ""]
        if summary["notes"]
        else [f"## {summary['title']}", ""]
    )
    for dataset in summary["datasets"]:
        lines += _dataset_table(summary, dataset)
    if any(r.get("strengthened") for r in summary["rows"]):
        lines += [
            "† The attack had not converged in at least one seed: that seed's figure is the per-sample "
            "worst case of the configured attack and a stronger rerun (each evaluation's 'strengthened').",
            "",
        ]
    lines += _checks_section(summary["checks"])
    lines += _verdict_section(summary)
    lines += _rate_section(summary)
    lines += _selection_section(summary.get("selections", []))
    lines += _matched_section(summary.get("matched", []), summary.get("match_ranges", []))
    return "\n".join(lines) + "\n"


def csv_text(summary: dict[str, Any]) -> str:
    """``table.csv``: one line per row of the summary (clean rows with kind ``clean``)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in summary["clean"]:
        writer.writerow({**r, "kind": "clean", "perturbation": "clean", "level": ""})
    writer.writerows(summary["rows"])
    return buf.getvalue()


def pivot(summary: dict[str, Any], dataset: str, model: str, kind: str) -> str:
    """A compact table with the variants as rows: ``noise`` (columns: each noise and level; level 0
    is clean on the evaluated samples) or ``attack`` (columns: each attack and ε > 0)."""
    rows = [
        r
        for r in summary["rows"]
        if (r["dataset"], r["model"], r["kind"]) == (dataset, model, kind)
        and (kind == "noise" or r["level"] > 0)
    ]

    def column(r: dict[str, Any]) -> str:
        return (
            "clean"
            if kind == "noise" and r["level"] == 0
            else f"{r['perturbation']} {'ε=' if kind == 'attack' else ''}{r['level']:g}"
        )

    columns = list(dict.fromkeys(column(r) for r in rows))
    table = [{"variant": v} for v in summary["variants"]]
    for r in rows:
        next(t for t in table if t["variant"] == r["variant"])[column(r)] = _cell(r, 1.0, 3).replace(
            " ± ", "±"
        )
    return format_table(table, ["variant", *columns])


# ---------------------------------------------------------------------------- figures and files
def figures(summary: dict[str, Any], out: Path) -> list[Path]:
    """One PNG per dataset × model: a panel per perturbation, a line (± std over seeds) per variant."""
    written = []
    for d in summary["datasets"]:
        for model in d["models"]:
            rows = [r for r in summary["rows"] if r["dataset"] == d["name"] and r["model"] == model]
            if rows:
                path = _figure(summary, d, model, rows, out)
                if path is None:
                    return []  # no matplotlib (warned once)
                written.append(path)
    return written


def _figure(
    summary: dict[str, Any], d: dict[str, Any], model: str, rows: list[dict[str, Any]], out: Path
) -> Path | None:
    panels = list(dict.fromkeys(r["perturbation"] for r in rows))
    made = _panel_grid(len(panels), (3.6, 3.0))
    if made is None:
        return None
    fig, axes = made
    for ax, pert in zip(axes.flat, panels, strict=False):
        for index, variant in enumerate(summary["variants"]):  # a variant keeps its style in every panel
            pts = sorted(
                (r["level"], r["mean"], r["std"])
                for r in rows
                if r["perturbation"] == pert and r["variant"] == variant
            )
            if pts:
                xs, ys, es = zip(*pts, strict=True)
                ax.errorbar(xs, ys, yerr=es, ms=3, capsize=2, label=variant, **curve_style(index))
        kind = next(r["kind"] for r in rows if r["perturbation"] == pert)
        _accuracy_panel(ax, pert, "ε" if kind == "attack" else "level")
    _close_grid(axes, len(panels))
    seeds = max(r["seeds"] for r in rows)
    evaluated = span(d["measured"]["evaluated_samples"])
    fig.suptitle(
        f"{summary['title']}: {d['name']} / {model}{f' — {REDUCED}' if d['reduced'] else ''}, "
        f"{evaluated} test samples, mean ± std over up to {seeds} seed(s)",
        fontsize=10,
    )
    fig.tight_layout()
    return save_figure(fig, out / f"{d['name']}_{model}.png")


def rate_figures(summary: dict[str, Any], out: Path) -> list[Path]:
    """One PNG per dataset × model, ``<dataset>_<model>_rate.png``: a panel per perturbation (and
    clean), accuracy against the measured firing rate, one point (± std over seeds on both axes)
    per variant, the variants of one neuron model joined in order of their rate."""
    points = rate_points(summary.get("points", []))
    reduced = {d["name"] for d in summary["datasets"] if d["reduced"]}
    written = []
    for key in dict.fromkeys((p["dataset"], p["model"]) for p in points):
        mine = [p for p in points if (p["dataset"], p["model"]) == key]
        suffix = f" — {REDUCED}" if key[0] in reduced else ""
        title = f"{summary['title']}: {key[0]} / {key[1]}{suffix}, accuracy against firing rate"
        path = _rate_figure(mine, title, out / f"{key[0]}_{key[1]}_rate.png")
        if path is None:
            return []  # no matplotlib (warned once)
        written.append(path)
    return written


def _rate_figure(points: list[dict[str, Any]], title: str, path: Path) -> Path | None:
    panels = list(dict.fromkeys(p["perturbation"] for p in points))
    made = _panel_grid(len(panels), (4.2, 3.4))
    if made is None:
        return None
    fig, axes = made
    families = list(dict.fromkeys(p["family"] for p in points))
    styles = {f: curve_style(i) for i, f in enumerate(families)}
    for ax, panel in zip(axes.flat, panels, strict=False):
        for fam in families:
            pts = sorted((p for p in points if p["perturbation"] == panel and p["family"] == fam), key=_rate)
            if not pts:
                continue
            xs, ys = [p["rate"] for p in pts], [p["accuracy"] for p in pts]
            ax.errorbar(
                xs,
                ys,
                xerr=[p["rate_std"] for p in pts],
                yerr=[p["accuracy_std"] for p in pts],
                ms=4,
                lw=1,
                capsize=2,
                label=fam,
                **styles[fam],
            )
            for p in pts:
                ax.annotate(p["variant"], (p["rate"], p["accuracy"]), fontsize=6, alpha=0.8,
                            xytext=(3, 3), textcoords="offset points")  # fmt: skip
        title_of = panel if panel == "clean" else f"{panel} (mean over levels > 0)"
        _accuracy_panel(ax, title_of, "firing rate (spikes / neuron / step)")
    _close_grid(axes, len(panels))
    seeds = max(p["seeds"] for p in points)
    fig.suptitle(f"{title}; mean ± std over up to {seeds} seed(s)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _panel_grid(count: int, size: tuple[float, float]) -> tuple[Any, Any] | None:
    """A figure of ``count`` panels, at most 4 a row, each ``size`` inches (an Agg figure of its
    own, :func:`~spikeshield.analysis.plots.subplots`); None without matplotlib."""
    cols = min(4, count)
    rows = math.ceil(count / cols)
    return subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)


def _accuracy_panel(ax: Any, title: str, xlabel: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)


def _close_grid(axes: Any, used: int) -> None:
    """Blank the unused panels; the first panel carries the y label and the legend."""
    for ax in list(axes.flat)[used:]:
        ax.axis("off")
    axes.flat[0].set_ylabel("accuracy")
    axes.flat[0].legend(fontsize=8)


def _rate(point: dict[str, Any]) -> float:
    return float(point["rate"])


def write_report(summary: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write ``summary.json``, ``table.md``, ``table.csv`` and the figures into ``out_dir``."""
    out = ensure_dir(out_dir)
    atomic_write_json(out / SUMMARY_FILE, summary)
    atomic_write_text(out / TABLE_FILE, markdown(summary))
    atomic_write_text(out / CSV_FILE, csv_text(summary))
    written = [out / SUMMARY_FILE, out / TABLE_FILE, out / CSV_FILE]
    return [*written, *figures(summary, out), *rate_figures(summary, out)]


class SummaryRow(msgspec.Struct):
    """A row of the summary (``rows``, ``clean``): mean ± std over seeds."""

    dataset: str
    model: str
    mean: Fraction
    std: NonNegativeFloat
    seeds: PositiveInt


class SummaryFile(msgspec.Struct):
    """``summary.json`` as read back (:func:`read_summary`); other fields are kept as written.
    ``spikeshield-experiment`` is the format of summaries written before format version 2."""

    format: Literal["spikeshield-summary", "spikeshield-experiment"]
    format_version: PositiveInt
    title: str = ""
    name: str = ""
    plan_fingerprint: str | None = None
    notes: list[str] = msgspec.field(default_factory=list)
    clean: list[SummaryRow] = msgspec.field(default_factory=list)
    rows: list[SummaryRow] = msgspec.field(default_factory=list)
    verdicts: list[dict[str, Any]] = msgspec.field(default_factory=list)
    checks: list[dict[str, Any]] = msgspec.field(default_factory=list)


def read_summary(path: str | Path) -> dict[str, Any]:
    """A ``summary.json``, checked against :class:`SummaryFile` (returned as written).

    Raises:
        DataError: one line naming the file (and the field) if it is missing, not JSON, or not a summary.
    """
    return check(read_json(path, "experiment summary", error=DataError), SummaryFile, str(path))


# ---------------------------------------------------------------------------- entries from folders
IGNORED_SETTINGS = ("seed", "data_root", "device")


def _run_folder(path: Path) -> Path | None:
    """The run an evaluation file belongs to: the nearest folder above it holding ``config.json``."""
    return next((f for f in list(path.parents)[:3] if (f / CONFIG_FILE).is_file()), None)


def _entry(path: Path) -> Entry:
    result = read_evaluation(path)
    run = _run_folder(path)
    config = read_run_config(run)["train"] if run else None
    metrics = read_metrics(run / METRICS_FILE) if run and (run / METRICS_FILE).is_file() else None
    spec = result.get("model") or {}
    return Entry(
        dataset=str(result.get("dataset", "?")),
        model=str(spec.get("name", "?")),
        variant=str(spec.get("neuron", "?")),
        seed=config.get("seed") if config else None,
        run=str(run or path.parent),
        result=result,
        config=config,
        metrics=metrics,
        tag=split_tag(result.get("split")),
    )


def _settings(e: Entry) -> dict[str, Any]:
    """The run's settings (seed aside), options tables flattened (``neuron_options.leak``)."""
    out: dict[str, Any] = {}
    for k, v in (e.config or e.result.get("model") or {}).items():
        if k in IGNORED_SETTINGS:
            continue
        out.update({f"{k}.{kk}": vv for kk, vv in v.items()} if isinstance(v, dict) else {k: v})
    return out


def _shown(value: Any) -> str:
    """A setting as a label shows it: ``0.1``, ``crop:4,flip``, ``true`` (no Python repr)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, list):
        return ",".join(_shown(v) for v in value) or "none"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _setting_labels(keys: list[str]) -> dict[str, str]:
    """Each differing setting's name in a label: an option by its own name (``leak``), unless two
    options of the list share it (then ``neuron_options.leak``)."""
    short = [k.rpartition(".")[2] for k in keys]
    return {k: s if short.count(s) == 1 else k for k, s in zip(keys, short, strict=True)}


def _label_variants(entries: list[Entry]) -> None:
    """Columns: the neuron, plus the settings in which its runs on one dataset × model differ
    (seed aside); run folder names where two runs would otherwise share a column and a seed."""
    for key in dict.fromkeys((e.dataset, e.model, e.variant) for e in entries):
        mine = [e for e in entries if (e.dataset, e.model, e.variant) == key]
        ident = {e.run: _settings(e) for e in mine}
        differ = sorted(
            {k for i in ident.values() for k in i if len({repr(j.get(k)) for j in ident.values()}) > 1}
        )
        names = _setting_labels(differ)
        for e in mine:
            given = {k: ident[e.run][k] for k in differ if ident[e.run].get(k) is not None}
            extra = ", ".join(f"{names[k]}={_shown(v)}" for k, v in given.items())
            e.variant += f" ({extra})" if extra else ""
    for key in dict.fromkeys((e.dataset, e.model) for e in entries):
        mine = [e for e in entries if (e.dataset, e.model) == key]
        slots: dict[tuple[str, Any], set[str]] = {}
        for e in mine:
            slots.setdefault((e.variant, e.seed), set()).add(e.run)
        if any(len(runs) > 1 for runs in slots.values()):
            names = _short_names({e.run for e in mine})
            for e in mine:
                e.variant = names[e.run]


def _short_names(runs: Iterable[str]) -> dict[str, str]:
    """Each run folder by its name, or by as many of its last path parts as tell the runs apart
    (``exp1/mlp-lif-s0``, ``exp2/mlp-lif-s0``): two runs never share a column by their names."""
    parts = {r: Path(r).parts or (r,) for r in runs}
    for k in range(1, max(map(len, parts.values()), default=0) + 1):
        names = {r: str(Path(*p[-k:])) for r, p in parts.items()}
        if len(set(names.values())) == len(names):
            return names
    return {r: r for r in parts}


def _protocol(result: dict[str, Any]) -> str:
    return result.get("settings_sha256") or repr(
        (
            result.get("samples"),
            result.get("seed"),
            result.get("gradient"),
            [(r["kind"], record_label(r), _level(r)) for r in result["records"]],
        )
    )


def _tag_protocols(entries: list[Entry]) -> list[str]:
    """Where two evaluations of one run hold the same perturbation and level, tag every
    evaluation with its protocol (E1, E2, ...) so that they are not averaged; returns the legend."""
    seen: dict[str, set[tuple[str, float]]] = {}
    collide = False
    for e in entries:
        keys = {(perturbation(r, e.tag), _level(r)) for r in e.result["records"]}
        collide |= bool(seen.get(e.run, set()) & keys)
        seen.setdefault(e.run, set()).update(keys)
    if not collide:
        return []
    tags = {p: f"E{i + 1}" for i, p in enumerate(dict.fromkeys(_protocol(e.result) for e in entries))}
    legend: dict[str, str] = {}
    for e in entries:
        e.tag = ", ".join(t for t in (e.tag, tags[_protocol(e.result)]) if t)
        checked = check_results(e.result)[1] is not None
        legend.setdefault(
            e.tag,
            f"- {{{e.tag}}}: {e.result.get('samples')} {_samples_of(e)}, seed {e.result.get('seed')}, "
            f"gradient {e.result.get('gradient', 'bptt')}, checks {'on' if checked else 'skipped'}",
        )
    return ["Evaluations with different settings of the same run, kept apart:", *legend.values()]


def _samples_of(e: Entry) -> str:
    return "held-out training samples" if e.result.get("split") == HOLDOUT else "test samples"


def find_entries(folders: Sequence[str | Path]) -> tuple[list[Entry], list[str]]:
    """Every evaluation (``robustness.json``) at or below ``folders`` as table entries, with the
    notes that explain their labels. Raises :class:`DataError` when there is none, or when two
    evaluations would fill one cell for one seed (:func:`_refuse_duplicates`)."""
    paths = list(dict.fromkeys(p.resolve() for f in folders for p in evaluation_files(f)))
    if not paths:
        where = ", ".join(str(f) for f in folders)
        raise DataError(f"no robustness.json found in {where}: run 'spikeshield evaluate --run DIR' first")
    entries = [_entry(p) for p in paths]
    _label_variants(entries)
    notes = _tag_protocols(entries)
    _refuse_duplicates(paths, entries)
    return entries, notes


def _refuse_duplicates(paths: Sequence[Path], entries: Sequence[Entry]) -> None:
    """Two evaluations that would fill one cell of the table for one seed (the same run evaluated
    twice with the same settings, e.g. once more with --out) would be averaged as if they were
    two seeds: refused, naming both files."""
    seen: dict[tuple[Any, ...], Path] = {}
    for path, e in zip(paths, entries, strict=True):
        for r in e.result["records"]:
            cell = (e.dataset, e.model, e.variant, e.seed, perturbation(r, e.tag), _level(r))
            first = seen.setdefault(cell, path)
            if first != path:
                raise DataError(
                    f"{first} and {path} both give {perturbation(r)} at {cell[5]:g} for {e.variant} "
                    f"(seed {e.seed}) of {e.run}: two evaluations with the same settings would be "
                    "averaged as two seeds; keep one of them (move the other out of the folders given)"
                )
