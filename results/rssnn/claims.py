"""The RSSNN claims from the grid's two evaluation suites, REDUCED (CPU budget).

Per variant, mean ± std over seeds: the clean accuracy on the attacked test subset; each attack
of the papers' own list (``rssnn-standard``) at the grid's ε and its worst case (per seed the
lowest of the list's attacks: a per-sample worst case would be lower or equal); the ``reliable``
suite at the same ε (per-sample worst case over APGD-CE, APGD-DLR, SA-PGD+ASSG and Square).
Then the seed-paired differences each claim is about, under both suites, and a figure
(``claims.png`` beside this file). Only the evaluations the experiment file asks for are read
(the runner's own collection of finished cells).

    python results/rssnn/claims.py experiments/rssnn_cpu.toml results/rssnn/grid > results/rssnn/claims.md
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from spikeshield.analysis.plots import save_figure, subplots
from spikeshield.analysis.report import perturbation
from spikeshield.analysis.robustness import check_results
from spikeshield.experiments.plan import load_plan
from spikeshield.experiments.runner import collect

LIST = ("fgsm", "pgd-7", "pgd-10", "pgd-20", "pgd-40", "apgd-ce-10", "apgd-dlr-10")
COLUMNS = ("clean", *LIST, "standard worst", "reliable")
CLAIMS = [  # (claim, variant with, variant without)
    ("MPPD raises robust accuracy under AT (DLIF, ρ = 1 vs 0)", "dlif / at-rho1", "dlif / at-rho0"),
    ("MPPD ℓ1 (MPPD-TV) vs no MPPD (DLIF AT)", "dlif / at-rho1-l1", "dlif / at-rho0"),
    ("MPPD ℓ1 vs ℓ2 (DLIF AT ρ = 1)", "dlif / at-rho1-l1", "dlif / at-rho1"),
    ("DLIF raises robust accuracy under AT (ρ = 0, DLIF vs LIF)", "dlif / at-rho0", "lif / at-rho0"),
    ("AT+Reg above AT (DLIF, ρ = 1)", "dlif / at-reg-rho1", "dlif / at-rho1"),
    ("AT raises robust accuracy (DLIF AT ρ = 0 vs raw)", "dlif / at-rho0", "dlif / raw"),
]
Rows = dict[str, dict[int, dict[str, float]]]


def load(experiment: Path, grid: Path) -> tuple[Rows, dict[str, list[str]]]:
    """variant → seed → {clean, each list attack, standard worst, reliable}; and per suite the
    runs whose gradient-masking checks did not all pass."""
    entries, _missing = collect(load_plan(experiment), grid)
    rows: Rows = {}
    flagged: dict[str, list[str]] = {"rssnn-standard": [], "reliable": []}
    for e in entries:
        suite = (e.result.get("suite") or {}).get("name")
        if suite not in flagged:
            continue
        row = rows.setdefault(e.variant, {}).setdefault(int(e.seed), {})
        row["clean"] = e.result["clean_accuracy"]
        checks, suspected = check_results(e.result)
        if suspected is not False or any(c.get("status") == "fail" for c in checks):
            flagged[suite].append(e.run)
        main = [r for r in e.result["records"] if r["kind"] == "attack" and r["eps"] > 0]
        if suite == "rssnn-standard":
            eps = e.result["suite"]["eps"]
            row.update({perturbation(r): r["accuracy"] for r in main if r["eps"] == eps})
            row["standard worst"] = min(row[a] for a in LIST)
        else:
            (record,) = main  # the grid runs reliable at one ε > 0
            row["reliable"] = record["accuracy"]
    return rows, flagged


def fmt(values: list[float]) -> str:
    if not values:
        return ""
    mean = 100 * statistics.fmean(values)
    return f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 else f"{mean:.1f}"


def paired(rows: Rows, a: str, b: str, key: str) -> tuple[str, str]:
    """Δ (points, mean ± std over the seeds both have) and how many seeds are up."""
    common = sorted(s for s in set(rows[a]) & set(rows[b]) if key in rows[a][s] and key in rows[b][s])
    diff = [rows[a][s][key] - rows[b][s][key] for s in common]
    return fmt(diff), f"{sum(d > 0 for d in diff)} of {len(diff)}"


def figure(rows: Rows, path: Path) -> None:
    """Per variant: the list's worst case and reliable, each seed a dot, the mean a bar."""
    made = subplots(figsize=(9, 4))
    if made is None:
        return
    fig, ax = made
    variants = list(rows)
    for k, (key, color) in enumerate((("standard worst", "tab:blue"), ("reliable", "tab:red"))):
        for i, v in enumerate(variants):
            values = [100 * r[key] for r in rows[v].values() if key in r]
            if values:
                x = i + (k - 0.5) * 0.35
                ax.bar(x, statistics.fmean(values), 0.33, color=color, alpha=0.35,
                       label=("rssnn-standard (worst of the list)" if key == "standard worst" else key)
                       if i == 0 else None)  # fmt: skip
                ax.plot([x] * len(values), values, "o", color=color, ms=4)
    ax.set_xticks(range(len(variants)), variants, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("robust accuracy % (ε = 0.1, L∞)")
    ax.set_title("RSSNN on Fashion-MNIST — REDUCED (CPU budget): bars mean, dots seeds", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def main(experiment: Path, grid: Path) -> None:
    rows, flagged = load(experiment, grid)
    print(
        "Accuracy (%) on the attacked test subset, mean ± std over seeds, at the grid's ε (L∞), "
        "REDUCED (CPU budget). 'standard worst': per seed the lowest attack of the rssnn-standard "
        "list; 'reliable': per-sample worst case of the reliable suite.\n"
    )
    print("| variant | seeds | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for variant, seeds in rows.items():
        cells = [fmt([s[c] for s in seeds.values() if c in s]) for c in COLUMNS]
        print(f"| {variant} | {len(seeds)} | " + " | ".join(cells) + " |")
    print(
        "\nPaired by seed (same seed = same initialisation and data order): difference in points, "
        "mean ± std over the common seeds, and how many seeds are up.\n"
    )
    print("| claim | with | without | Δ standard worst | seeds up | Δ reliable | seeds up | Δ clean |")
    print("|---|---|---|---|---|---|---|---|")
    for claim, a, b in CLAIMS:
        if a not in rows or b not in rows:
            print(f"| {claim} | {a} | {b} | not run | | | | |")
            continue
        cells = [*paired(rows, a, b, "standard worst"), *paired(rows, a, b, "reliable")]
        print(f"| {claim} | {a} | {b} | " + " | ".join(cells) + f" | {paired(rows, a, b, 'clean')[0]} |")
    print()
    for suite, runs in flagged.items():
        passed = "every run passed every gradient-masking check"
        print(f"- {suite}: " + (f"checks not all passed in {', '.join(runs)}" if runs else passed))
    figure(rows, Path(__file__).with_name("claims.png"))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
