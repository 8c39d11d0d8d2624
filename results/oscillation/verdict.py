"""The verdict table of the oscillation grid (issue 15), from the grid's evaluation files.

Per variant (a run folder's name without the ``<model>-`` prefix, ``cnn-``, and the ``-s<seed>``
suffix), at each ε asked for (default 0.2, L∞), mean ± std over seeds of:

- clean accuracy (the evaluation samples);
- the paper's threat model: PGD-10 (and FGSM) through the gradient the model hands out (``bptt``);
- PGD-10 through the true forward's gradient (``true``);
- the ``reliable`` suite alone (its EOT passes per gradient in brackets where more than one: the
  random-phase model), the members that ran, and in how many seeds it suspected masking;
- the worst case: per seed, the lowest accuracy of every attack run on the model at that ε
  (FGSM and PGD-10 through each gradient, the ``reliable`` suite: itself a per-sample worst
  case), so an upper bound of its robust accuracy;
- the gap between the two (points);
- the gradient-masking checks of the ``bptt`` evaluation: in how many seeds masking was
  suspected, and which checks failed.

Where the grid folder also holds evaluations made beside the grid's own with another number
of EOT passes (``eot/<run>/`` and ``eot1-reliable/<run>/``, from ``grid/pass3/eot.sh`` and
``grid/pass3/reliable-eot1.sh``: the random-phase model), a second table sets PGD-10 and the
``reliable`` suite without and with EOT side by side, with the transfer attacks of
``grid/pass3/transfer.sh`` (``transfer/<run>-from-<source>/``), per seed and as mean ± std.

    python results/oscillation/verdict.py results/oscillation/grid --eps 0.2 0.1 \\
        --out results/oscillation/grid/verdict.md

A grid over several datasets and models (``runs/<dataset>/<model>-<variant>-s<seed>/``, e.g.
``experiments/oscillation_datasets.toml``) gets, with ``--per-model``, one table per (dataset,
model), the same columns, at each dataset's own ε: ``--dataset-eps NAME=EPS ...`` (any dataset
not named: every non-zero ε its runs were evaluated at):

    python results/oscillation/verdict.py results/oscillation/datasets --per-model \\
        --dataset-eps mnist=0.2 fashion-mnist=0.1 cifar10=0.0156862745 \\
        --out results/oscillation/datasets/verdict.md
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from spikeshield.io import atomic_write_text


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.1f} ± {100 * std:.1f}"


_RUN_NAME = re.compile(r"([^-]+)-(.+)-s(\d+)")  # <model>-<variant>-s<seed>


def collect(grid: Path, eps: float) -> dict[str, dict[int, dict]]:
    """``{variant: {seed: {"clean", "own_pgd", "own_fgsm", "true_pgd", "reliable", "reliable_eot",
    "reliable_members", "reliable_suspected", "worst", "worst_by", "suspected", "failed"}}}`` over
    every dataset and model of the grid (the digits grid has one of each)."""
    out: dict[str, dict[int, dict]] = defaultdict(dict)
    for (_dataset, _model), variants in collect_per_model(grid, eps).items():
        for variant, seeds in variants.items():
            out[variant].update(seeds)
    return out


def collect_per_model(grid: Path, eps: float, datasets: set[str] | None = None) -> dict:
    """``{(dataset, model): {variant: {seed: cell}}}``, a cell as in :func:`collect`, for the run
    folders ``grid/runs/<dataset>/<model>-<variant>-s<seed>`` (only the datasets named, if any).
    Only the evaluations made at ``eps`` count (a run may hold several at other budgets beside
    each other): clean accuracy, checks and suite members are theirs."""
    out: dict = defaultdict(lambda: defaultdict(dict))
    for run in sorted((grid / "runs").glob("*/*-s[0-9]*")):
        match = _RUN_NAME.fullmatch(run.name)
        if match is None or (datasets is not None and run.parent.name not in datasets):
            continue
        model, variant, seed = match.group(1), match.group(2), int(match.group(3))
        cell: dict = {"worst": 1.0, "worst_by": None, "failed": set()}
        for path in sorted(run.glob("evaluations/*/robustness.json")):
            result = json.loads(path.read_text())
            if not any(abs(e - eps) < 1e-9 for e in result["settings"]["eps"]):
                continue  # an evaluation at other budgets: its checks are not this ε's
            gradient = result["settings"]["gradient"] if not result["settings"].get("suite") else "suite"
            cell["clean"] = result["clean_accuracy"]
            for r in result["records"]:
                if r.get("kind") != "attack" or abs(r["eps"] - eps) > 1e-9:
                    continue
                name = r["attack"] + (f" [{r['gradient']}]" if gradient != "suite" else "")
                if r["accuracy"] < cell["worst"]:
                    cell["worst"], cell["worst_by"] = r["accuracy"], name
                if gradient in ("bptt", "true"):
                    cell[("own_" if gradient == "bptt" else "true_") + r["attack"]] = r["accuracy"]
                if gradient == "suite" and r["attack"] == "reliable":
                    cell["reliable"], cell["reliable_eot"] = r["accuracy"], r["eot_samples"]
            if gradient == "suite" and result["suite"]["name"] == "reliable":
                cell["reliable_members"] = tuple(result["suite"]["members"])
                cell["reliable_suspected"] = bool(result["gradient_masking_suspected"])
            if gradient == "bptt":
                cell["suspected"] = bool(result["gradient_masking_suspected"])
                cell["failed"] |= {c["check"] for c in result["checks"] if c["status"] == "fail"}
        if cell["worst_by"] is not None:  # a run with evaluations at this ε (not one in progress)
            out[(run.parent.name, model)][variant][seed] = cell
    return out


def evaluated_eps(grid: Path, dataset: str) -> list[float]:
    """Every non-zero ε of an attack record in a dataset's evaluations, largest first."""
    found = set()
    for path in (grid / "runs" / dataset).glob("*-s[0-9]*/evaluations/*/robustness.json"):
        found |= {r["eps"] for r in json.loads(path.read_text())["records"] if r.get("kind") == "attack"}
    return sorted((e for e in found if e > 0), reverse=True)


def _eps_label(eps: float) -> str:
    """``0.2``; a budget on the 1/255 grid below 0.1 also as such (``4/255 = 0.0157``)."""
    k = round(eps * 255)
    if eps < 0.1 and k > 0 and abs(eps - k / 255) < 1e-6:
        return f"{k}/255 = {eps:.4f}"
    return f"{eps:g}"


def per_model_sections(grid: Path, dataset_eps: dict[str, list[float]]) -> str:
    """One verdict table per (dataset, model) of the grid at each ε given for its dataset (a
    dataset not in ``dataset_eps``: every non-zero ε it was evaluated at), with how many seeds
    each variant has; datasets and models in the order of the folders."""
    datasets = sorted(p.name for p in (grid / "runs").iterdir() if p.is_dir())
    sections = []
    for dataset in datasets:
        for eps in dataset_eps.get(dataset) or evaluated_eps(grid, dataset):
            for (_, model), variants in sorted(collect_per_model(grid, eps, {dataset}).items()):
                caption = table(dict(variants), eps).replace(f"ε = {eps:g} ", f"ε = {_eps_label(eps)} ", 1)
                sections.append(f"## {dataset}, `{model}`, ε = {_eps_label(eps)}\n\n" + caption)
    return "\n".join(sections)


def table(cells: dict[str, dict[int, dict]], eps: float) -> str:
    lines = [
        "| variant | clean | FGSM, own gradient | PGD-10, own gradient (paper's threat model) | "
        "PGD-10, true gradient | reliable suite | worst case "
        "over all attacks | gap (points) | masking suspected (own gradient) | "
        "checks that failed (own gradient) | masking suspected (reliable) | "
        "worst attack (seeds) | reliable's members |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, seeds in cells.items():
        runs = list(seeds.values())
        own = [c.get("own_pgd") for c in runs if c.get("own_pgd") is not None]
        worst = [c["worst"] for c in runs]
        gap = [c["own_pgd"] - c["worst"] for c in runs if c.get("own_pgd") is not None]
        failed = sorted(set().union(*(c["failed"] for c in runs)))
        by = sorted({c["worst_by"] or "–" for c in runs})
        eot = sorted({c["reliable_eot"] for c in runs if c.get("reliable_eot", 1) > 1})
        reliable = _mean_std([c["reliable"] for c in runs if "reliable" in c])
        reliable += f" (EOT {', '.join(map(str, eot))})" if eot else ""
        members = sorted({", ".join(c["reliable_members"]) for c in runs if "reliable_members" in c})
        graded = [c for c in runs if "reliable_suspected" in c]
        lines.append(
            f"| {variant} | {_mean_std([c['clean'] for c in runs if 'clean' in c])} | "
            f"{_mean_std([c['own_fgsm'] for c in runs if 'own_fgsm' in c])} | {_mean_std(own)} | "
            f"{_mean_std([c['true_pgd'] for c in runs if 'true_pgd' in c])} | {reliable} | "
            f"{_mean_std(worst)} | {_mean_std(gap)} | "
            f"{sum(bool(c.get('suspected')) for c in runs)} of {len(runs)} | {', '.join(failed) or 'none'} | "
            f"{sum(c['reliable_suspected'] for c in graded)} of {len(graded)} | "
            f"{', '.join(by)} | {'; '.join(members) or '–'} |"
        )
    caption = (
        f"Accuracy % at ε = {eps:g} (L∞) on the evaluated test samples (clean: the same samples), "
        "mean ± std over seeds, REDUCED (CPU budget); worst case: "
        "per seed the lowest accuracy of any attack run at that ε (an upper bound of robust accuracy); "
        "gap: PGD-10 through the model's own gradient minus the worst case."
    )
    return caption + "\n\n" + "\n".join(lines) + "\n"


def _kind(result: dict) -> str:
    """An evaluation's suite, or else its attacker gradient."""
    return result["settings"].get("suite") or result["settings"]["gradient"]


def _accuracy(result: dict, attack: str, eps: float) -> float | None:
    found = [
        r["accuracy"] for r in result["records"] if r.get("attack") == attack and abs(r["eps"] - eps) < 1e-9
    ]
    return found[0] if found else None


def eot_table(grid: Path, eps: float) -> str:
    """PGD-10 and ``reliable`` without and with EOT, and transfer from deterministic models of the
    same seed, for every run with an evaluation in ``grid/eot`` or ``grid/eot1-reliable`` (empty
    string if there is none)."""
    extra = sorted(
        {p.parent.name for d in ("eot", "eot1-reliable") for p in (grid / d).glob("*/robustness.json")}
    )
    if not extra:
        return ""
    columns = {  # label: (folder of the evaluation, {name}: the run's; suite or gradient; attack)
        "PGD-10, own gradient, no EOT (grid)": ("runs", "bptt", "pgd"),
        "PGD-10, own gradient, EOT": ("eot/{name}", None, "pgd"),
        "reliable, no EOT": ("eot1-reliable/{name}", None, "reliable"),
        "reliable, EOT (grid)": ("runs", "reliable", "reliable"),
        "transfer PGD-20 from `osc` (same seed)": ("transfer/{name}-from-osc", None, "transfer"),
        "transfer PGD-20 from LIF (same seed)": ("transfer/{name}-from-lif", None, "transfer"),
    }
    rows: dict[str, dict[str, list[tuple[int, float, int]]]] = defaultdict(lambda: defaultdict(list))
    for name in extra:
        match = re.fullmatch(r"[^-]+-(.+)-s(\d+)", name)
        if match is None:
            continue
        variant, seed = match.group(1), int(match.group(2))
        for label, (where, kind, attack) in columns.items():
            if where == "runs":
                found = (grid / "runs").glob(f"*/{name}/evaluations/*/robustness.json")
                paths = [p for p in found if _kind(json.loads(p.read_text())) == kind]
            else:
                paths = [grid / where.format(name=name) / "robustness.json"]
            for path in paths:
                if path.is_file():
                    result = json.loads(path.read_text())
                    accuracy = _accuracy(result, attack, eps)
                    if accuracy is not None:
                        rows[variant][label].append((seed, accuracy, int(result["eot_samples"])))
    lines = [
        f"Accuracy % at ε = {eps:g} (L∞), the same 200 test samples, mean ± std over seeds (per seed in "
        "brackets; EOT: passes over the random draw per gradient), REDUCED (CPU budget).",
        "",
        "| variant | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for variant, cells in rows.items():
        parts = []
        for label in columns:
            found = sorted(cells.get(label, []))
            eot = sorted({e for _, _, e in found})
            text = _mean_std([a for _, a, _ in found])
            if found:
                text += (
                    " ("
                    + ", ".join(f"{100 * a:.1f}" for _, a, _ in found)
                    + f"; EOT {', '.join(map(str, eot))})"
                )
            parts.append(text)
        lines.append(f"| {variant} | " + " | ".join(parts) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("grid", type=Path)
    p.add_argument("--eps", type=float, nargs="+", default=[0.2], help="one section per budget")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument(
        "--per-model",
        action="store_true",
        help="one table per (dataset, model) at each dataset's ε (see --dataset-eps); --eps is ignored",
    )
    p.add_argument(
        "--dataset-eps",
        nargs="+",
        default=[],
        metavar="DATASET=EPS",
        help="with --per-model: a dataset's budget (repeatable per dataset); default: every ε evaluated",
    )
    args = p.parse_args()
    if args.per_model:
        dataset_eps: dict[str, list[float]] = defaultdict(list)
        for item in args.dataset_eps:
            name, _, value = item.partition("=")
            try:
                dataset_eps[name].append(float(value))
            except ValueError:
                p.error(f"--dataset-eps {item!r}: expected DATASET=EPS, e.g. mnist=0.2")
        unknown = set(dataset_eps) - {q.name for q in (args.grid / "runs").glob("*") if q.is_dir()}
        if unknown:  # a typo, or a grid still running: say so, make the tables there are
            print(f"note: --dataset-eps: no runs (yet) for {', '.join(sorted(unknown))}", file=sys.stderr)
        text = per_model_sections(args.grid, dataset_eps)
        print(text)
        if args.out:
            atomic_write_text(args.out, text)
        return
    sections = []
    for eps in args.eps:
        text = f"## ε = {eps:g}\n\n" + table(collect(args.grid, eps), eps)
        eot = eot_table(args.grid, eps)
        text += "\n### Random phase: without and with EOT, and transfer\n\n" + eot if eot else ""
        sections.append(text)
    text = "\n".join(sections)
    print(text)
    if args.out:
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
