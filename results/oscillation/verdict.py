"""The verdict table of the oscillation grid (issue 15), from the grid's evaluation files.

Per variant (a run folder's name without the ``cnn-`` prefix and the ``-s<seed>`` suffix), at
each ε asked for (default 0.2, L∞), mean ± std over seeds of:

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
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

from spikeshield.io import atomic_write_text


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.1f} ± {100 * std:.1f}"


def collect(grid: Path, eps: float) -> dict[str, dict[int, dict]]:
    """``{variant: {seed: {"clean", "own_pgd", "own_fgsm", "true_pgd", "reliable", "reliable_eot",
    "reliable_members", "reliable_suspected", "worst", "worst_by", "suspected", "failed"}}}``."""
    out: dict[str, dict[int, dict]] = defaultdict(dict)
    for run in sorted((grid / "runs").glob("*/*-s[0-9]*")):
        match = re.fullmatch(r"[^-]+-(.+)-s(\d+)", run.name)
        if match is None:
            continue
        variant, seed = match.group(1), int(match.group(2))
        cell: dict = {"worst": 1.0, "worst_by": None, "failed": set()}
        for path in sorted(run.glob("evaluations/*/robustness.json")):
            result = json.loads(path.read_text())
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
            out[variant][seed] = cell
    return out


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
    args = p.parse_args()
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
