"""Files of one robustness evaluation (JSON, CSV, PNG), and where evaluations are found."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Literal

import msgspec

from spikeshield.analysis.plots import format_table, plot_curves, table_to_csv
from spikeshield.errors import DataError
from spikeshield.io import atomic_write_json, atomic_write_text, ensure_dir, read_json
from spikeshield.schema import FiniteFloat, Fraction, NonNegativeFloat, NonNegativeInt, check

ROBUSTNESS_FILE = "robustness.json"
CSV_FILE = "robustness.csv"
ATTACK_PLOT = "robustness_attacks.png"
NOISE_PLOT = "robustness_noise.png"

CSV_COLUMNS = (
    "kind",
    "name",
    "norm",
    "eps_or_level",
    "accuracy",
    "stderr",
    "correct",
    "total",
    "gradient",
    "steps",
    "step_size",
    "schedule",
    "restarts",
    "random_start",
    "loss",
    "eot_samples",
    "seed",
    "model_calls_per_attacked_sample",
    "seconds",
)


def record_label(record: dict[str, Any]) -> str:
    """``pgd`` / ``pgd [bptr]`` / ``gaussian``: how a record is named in tables and legends
    (``pgd-10 + rerun steps=20``: the per-sample worst case with a stronger rerun)."""
    if record["kind"] == "noise":
        return record["noise"]
    label = record["attack"]
    if record.get("steps", 1) > 1 and record["attack"] in ("pgd", "apgd", "apgd-ce", "apgd-dlr", "transfer"):
        label += f"-{record['steps']}"
    gradient = record.get("gradient", "bptt")
    if gradient not in ("bptt", "none (scores only)", "source model's", "per member"):
        label += f" [{gradient}]"
    if record.get("strengthened"):  # the attack had not converged: worst case with a stronger rerun
        stronger = record["strengthened"]["stronger_settings"]
        label += " + rerun " + ", ".join(f"{k}={v}" for k, v in stronger.items())
    return label


def csv_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [
        {"kind": "clean", "name": "clean", "accuracy": result["clean_accuracy"], "total": result["samples"]}
    ]
    for r in result["records"]:
        row = {
            "kind": r["kind"],
            "name": r.get("attack") or r.get("noise"),
            "norm": r.get("norm", ""),
            "eps_or_level": r.get("eps", r.get("level")),
        }
        for column in CSV_COLUMNS[4:]:
            row[column] = r.get(column, "")
        rows.append(row)
    return [{c: row.get(c, "") for c in CSV_COLUMNS} for row in rows]


def write_robustness(result: dict[str, Any], out_dir: str | Path, *, title: str = "") -> list[Path]:
    """Write ``robustness.json``, ``robustness.csv`` and the accuracy curves into ``out_dir``."""
    out = ensure_dir(out_dir)
    atomic_write_json(out / ROBUSTNESS_FILE, result)
    atomic_write_text(out / CSV_FILE, table_to_csv(csv_rows(result)))
    written = [out / ROBUSTNESS_FILE, out / CSV_FILE]
    attacks = [r for r in result["records"] if r["kind"] == "attack"]
    if attacks:
        panels: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
        for r in attacks:
            name = (
                f"{'L∞' if r['norm'] == 'linf' else 'L2'} attacks, gradient {result.get('gradient', 'bptt')}"
            )
            # every curve starts at ε = 0, which equals clean accuracy (checked)
            xs, ys = panels.setdefault(name, {}).setdefault(
                record_label(r), ([0.0], [result["clean_accuracy"]])
            )
            if r["eps"] == 0:
                continue
            xs.append(r["eps"])
            ys.append(r["accuracy"])
        path = plot_curves({}, out / ATTACK_PLOT, title=title, xlabel="ε", panels=panels)
        if path:
            written.append(path)
    noises = [r for r in result["records"] if r["kind"] == "noise"]
    if noises:
        curves: dict[str, tuple[list[float], list[float]]] = {}
        for r in noises:
            xs, ys = curves.setdefault(r["noise"], ([], []))
            xs.append(r["level"])
            ys.append(r["accuracy"])
        path = plot_curves(
            curves, out / NOISE_PLOT, title=f"{title}: accuracy under noise", xlabel="noise level"
        )
        if path:
            written.append(path)
    return written


def summary_table(result: dict[str, Any]) -> str:
    """One line per record: name, ε or level, accuracy."""
    rows = [{"name": "clean", "budget": "", "accuracy": f"{result['clean_accuracy']:.4f}"}]
    for r in result["records"]:
        budget = f"{r['norm']} ε={r['eps']:g}" if r["kind"] == "attack" else f"level {r['level']:g}"
        name = record_label(r)
        if r.get("fooled_by_member") and r["eps"] > 0:  # a suite's worst case: who fooled how many
            name += " (fooled: " + ", ".join(f"{m} {n}" for m, n in r["fooled_by_member"].items()) + ")"
        rows.append({"name": name, "budget": budget, "accuracy": f"{r['accuracy']:.4f}"})
    return format_table(rows, ["name", "budget", "accuracy"], ["attack / noise", "budget", "accuracy"])


def check_results(result: dict[str, Any]) -> tuple[list[dict[str, Any]], bool | None]:
    """The checks of an evaluation and its "gradient masking suspected" verdict (None: not checked).

    Every reader of check results goes through here, so a renamed key is adapted in one place."""
    return list(result.get("checks") or []), result.get("gradient_masking_suspected")


def checks_text(result: dict[str, Any]) -> str:
    checks, suspected = check_results(result)
    lines = [f"  [{c['status']:7s}] {c['check']}: {c['detail']}" for c in checks]
    verdict = {True: "GRADIENT MASKING SUSPECTED", False: "no sign of gradient masking"}.get(
        suspected, "not run"
    )
    warnings = [f"  warning: {w}" for w in result.get("warnings", [])]
    return "\n".join(["gradient-masking checks: " + verdict, *lines, *warnings])


# ---------------------------------------------------------------------------- finding evaluations
EVALUATIONS_DIR = "evaluations"
"""Each evaluation of a run writes its own folder ``RUN/evaluations/<gradient>-<settings hash>/``."""


class Strengthened(msgspec.Struct):
    """A record's stronger rerun (the attack had not converged)."""

    stronger_settings: dict[str, Any]


class AttackRecord(msgspec.Struct, tag_field="kind", tag="attack"):
    """One attack at one budget (the fields the tables read; a record holds more)."""

    attack: str
    norm: str
    eps: NonNegativeFloat
    accuracy: Fraction
    steps: NonNegativeInt = 1
    gradient: str = "bptt"
    strengthened: Strengthened | None = None
    correct: NonNegativeInt | None = None
    total: NonNegativeInt | None = None


class NoiseRecord(msgspec.Struct, tag_field="kind", tag="noise"):
    """One corruption at one level."""

    noise: str
    level: FiniteFloat
    accuracy: Fraction
    correct: NonNegativeInt | None = None
    total: NonNegativeInt | None = None


class CheckRecord(msgspec.Struct):
    """One gradient-masking check."""

    check: str
    status: str
    detail: str


class RobustnessFile(msgspec.Struct):
    """``robustness.json``, as read back by reports and by the reuse of a finished evaluation
    (:func:`read_evaluation`): what they use is typed, other fields are kept as written, and
    fields added since the first version are optional (older evaluations still read)."""

    format: Literal["spikeshield-robustness"]
    samples: NonNegativeInt
    clean_accuracy: Fraction
    records: list[AttackRecord | NoiseRecord]
    checks: list[CheckRecord] | None = None
    gradient_masking_suspected: bool | None = None
    warnings: list[str] = msgspec.field(default_factory=list)
    gradient: str = "bptt"
    seed: NonNegativeInt | None = None
    settings_sha256: str | None = None
    inputs: dict[str, str] = msgspec.field(default_factory=dict)
    model: dict[str, Any] = msgspec.field(default_factory=dict)
    dataset: str = "?"


def read_evaluation(path: str | Path) -> dict[str, Any]:
    """A ``robustness.json``, checked against :class:`RobustnessFile` (returned as written).

    Raises:
        DataError: one line naming the file (and the field): missing, not a regular file, not
            JSON, not a robustness file, or a field of the wrong type or out of range.
    """
    result = read_json(path, "robustness results", error=DataError)
    if not isinstance(result, dict) or result.get("format") != "spikeshield-robustness":
        raise DataError(f"{path} is not a spikeshield robustness file")
    return check(result, RobustnessFile, str(path))


def evaluation_files(folder: str | Path) -> list[Path]:
    """Every ``robustness.json`` at or below ``folder`` (a run, a folder of runs, an evaluation),
    in a stable order: ``evaluate --out`` folders, the ``evaluations/*`` of runs, and the
    ``robustness-*`` folders of experiment runs written before issue 11."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder")
    return sorted(p for p in folder.rglob(ROBUSTNESS_FILE) if not p.name.startswith("."))


def clear_evaluation(folder: Path) -> None:
    """Remove the files an evaluation writes (``--overwrite``), so none of the old set stays behind."""
    for name in (ROBUSTNESS_FILE, CSV_FILE, ATTACK_PLOT, NOISE_PLOT):
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
