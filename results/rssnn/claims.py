"""The RSSNN claims from the grid's evaluations: per variant, mean ± std over seeds of clean
accuracy, each attack's robust accuracy and the worst case over the attacks (per seed: the lowest
attack accuracy; a per-sample worst case would be lower still or equal), and the paired
differences each claim is about. REDUCED (CPU budget).

    python results/rssnn/claims.py results/rssnn/grid > results/rssnn/claims.md
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

ATTACKS = ("fgsm", "pgd", "apgd-ce", "apgd-dlr")
CLAIMS = [  # (claim, variant with, variant without)
    ("MPPD raises robust accuracy under AT (DLIF, ρ = 1 vs 0)", "dlif-at-rho1", "dlif-at-rho0"),
    ("MPPD ℓ1 (MPPD-TV) vs no MPPD (DLIF AT)", "dlif-at-rho1-l1", "dlif-at-rho0"),
    ("MPPD ℓ1 vs ℓ2 (DLIF AT ρ = 1)", "dlif-at-rho1-l1", "dlif-at-rho1"),
    ("DLIF raises robust accuracy under AT (ρ = 0, DLIF vs LIF)", "dlif-at-rho0", "lif-at-rho0"),
    ("AT+Reg above AT (DLIF, ρ = 1)", "dlif-at-reg-rho1", "dlif-at-rho1"),
    ("AT raises robust accuracy (DLIF AT ρ = 0 vs raw)", "dlif-at-rho0", "dlif-raw"),
]


def load(grid: Path) -> dict[str, dict[int, dict[str, float]]]:
    """variant → seed → {clean, fgsm, pgd, ..., worst} from each run's own-surrogate evaluation."""
    out: dict[str, dict[int, dict[str, float]]] = {}
    for path in sorted(grid.glob("runs/*/*/evaluations/bptt-*/robustness.json")):
        run = path.parents[2].name
        variant, seed = re.fullmatch(r"[^-]+-(.+)-s(\d+)", run).groups()
        result = json.loads(path.read_text())
        row = {"clean": result["clean_accuracy"]}
        for r in result["records"]:
            if r["kind"] == "attack" and r["eps"] > 0 and r["attack"] in ATTACKS:
                row[r["attack"]] = r["accuracy"]
        row["worst"] = min(row[a] for a in ATTACKS)
        out.setdefault(variant, {})[int(seed)] = row
    return out


def fmt(values: list[float]) -> str:
    mean = 100 * statistics.fmean(values)
    std = 100 * statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{mean:.1f} ± {std:.1f}"


def main(grid: Path) -> None:
    data = load(grid)
    cols = ("clean", *ATTACKS, "worst")
    print("Accuracy (%) on the evaluated test subset, mean ± std over seeds; attacks at the grid's ε, "
          "own surrogate gradient. REDUCED (CPU budget).\n")
    print("| variant | seeds | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for variant, seeds in sorted(data.items()):
        cells = [fmt([s[c] for s in seeds.values()]) for c in cols]
        print(f"| {variant} | {len(seeds)} | " + " | ".join(cells) + " |")
    print("\nPaired by seed (same seed = same initialisation and data order): difference of the worst-case "
          "robust accuracy, points, mean ± std over the common seeds, and how many seeds agree in sign.\n")
    print("| claim | with | without | Δ worst case | Δ PGD | Δ APGD-CE | seeds with Δ worst > 0 |")
    print("|---|---|---|---|---|---|---|")
    for claim, a, b in CLAIMS:
        if a not in data or b not in data:
            print(f"| {claim} | {a} | {b} | not run | | | |")
            continue
        common = sorted(set(data[a]) & set(data[b]))
        diff = {k: [data[a][s][k] - data[b][s][k] for s in common] for k in ("worst", "pgd", "apgd-ce")}
        up = sum(d > 0 for d in diff["worst"])
        print(f"| {claim} | {a} | {b} | {fmt(diff['worst'])} | {fmt(diff['pgd'])} | {fmt(diff['apgd-ce'])} "
              f"| {up} of {len(common)} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
