"""The sampling reproduction as data: a TOML file read by ``spikeshield sample experiment``.

Why not ``spikeshield experiment``: that runner's grid is datasets × classifiers × neurons ×
training modes, each cell a classifier evaluated under attacks and corruptions. A sampling cell
is a mask source and a reconstructor scored by PSNR/SSIM against baselines that share its
per-image pixel counts, plus a DVS branch (compress, write, read back, classify); none of it is
a classifier's robustness record. The N-MNIST classifier itself is an ordinary
``spikeshield.training`` run. Example (``experiments/sampling.toml``)::

    name = "sampling"
    seeds = [0, 1, 2]
    rates = [0.05, 0.1, 0.2, 0.3, 0.5]
    masks = ["spiking", "random", "grid", "magnitude"]
    [train]                              # SampleConfig settings of every run
    epochs = 2
    [datasets.mnist]
    train = { limit_train = 3000, limit_test = 500 }
    [events]                             # optional: the DVS branch
    dataset = "nmnist"
    rates = [0.1, 0.3, 1.0]
    compressor = "xz"                    # gz (default), bz2 or xz: the archives' compressor
    train = { time_steps = 8 }
    classifier = { model = "cnn", neuron = "lif", epochs = 3 }

Outputs under ``--out``: ``runs/<dataset>/s<seed>/<mask>/`` (one sampling run each),
``runs/<dataset>/s<seed>/evaluation.json``, ``events/s<seed>/{sampler,classifier}/``,
``events/s<seed>/compression.json`` (+ the compressed archives, ``.tar.<compressor>``), then ``summary.json``,
``table.md``, ``table.csv``, figures and ``COMMAND``. Rerunning the same command resumes:
finished runs and results with the same settings are kept, never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from spikeshield import validate
from spikeshield.environment import environment
from spikeshield.errors import UsageError
from spikeshield.io import atomic_write_json, atomic_write_text, ensure_dir, read_json
from spikeshield.sampling.compress import COMPRESSORS
from spikeshield.sampling.masks import MASK_KINDS, check_rate
from spikeshield.sampling.model import SampleConfig
from spikeshield.training import TrainConfig

TOP_KEYS = {"name", "claim", "budget", "seeds", "rates", "masks", "train", "datasets", "events", "evaluate"}
SHRINK = ("seeds", "datasets", "limit_train", "limit_test", "epochs")


@dataclass
class SamplingPlan:
    """A parsed, checked sampling experiment."""

    name: str
    source: str
    claim: str
    budget: str
    seeds: list[int]
    rates: list[float]
    masks: list[str]
    datasets: dict[str, dict[str, Any]]
    """dataset → {"train": SampleConfig settings, "reduced": bool}."""
    events: dict[str, Any] | None
    evaluate: dict[str, Any] = field(default_factory=dict)
    shrunk: dict[str, Any] = field(default_factory=dict)
    text: str = ""

    def config(self, dataset: str, mask: str, seed: int, data_root: str | None, device: str) -> SampleConfig:
        return SampleConfig(
            dataset=dataset, mask=mask, seed=seed, rates=list(self.rates), data_root=data_root, device=device,
            **self.datasets[dataset]["train"],
        )  # fmt: skip

    def event_config(self, seed: int, data_root: str | None, device: str) -> SampleConfig:
        assert self.events is not None
        ev = self.events
        return SampleConfig(
            dataset=ev["dataset"], mask="spiking", seed=seed,
            rates=[r for r in ev["rates"] if r < 1] or [1.0],
            data_root=data_root, device=device, **ev["train"],
        )  # fmt: skip

    def classifier_config(self, seed: int, data_root: str | None, device: str) -> TrainConfig:
        assert self.events is not None
        options = {"split_by": "time"}
        return TrainConfig(
            dataset=self.events["dataset"], seed=seed, data_root=data_root, device=device,
            time_steps=self.event_config(seed, data_root, device).time_steps, dataset_options=options,
            **self.events["classifier"],
        )  # fmt: skip

    def fingerprint(self) -> str:
        body = {k: getattr(self, k) for k in ("seeds", "rates", "masks", "datasets", "events", "evaluate")}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"{where} must be a table, got {type(value).__name__}")
    return value


def _rates(value: Any, where: str) -> list[float]:
    if not isinstance(value, list) or not value:
        raise UsageError(f"{where} must be a non-empty list of sampling rates in (0, 1]")
    return [check_rate(r, where) for r in value]


def parse_sampling_plan(raw: dict[str, Any], source: str, text: str = "") -> SamplingPlan:
    """A :class:`SamplingPlan` from TOML data; every run's settings are checked before any work."""
    validate.reject_unknown(source, raw, TOP_KEYS)
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(validate.is_int(s) and s >= 0 for s in seeds):
        raise UsageError(f"{source}: seeds must be a non-empty list of integers >= 0")
    masks = raw.get("masks", list(MASK_KINDS))
    if not isinstance(masks, list) or not masks or any(m not in MASK_KINDS for m in masks):
        raise UsageError(f"{source}: masks must be a list drawn from {', '.join(MASK_KINDS)}, got {masks!r}")
    base = _table(raw.get("train", {}), "train")
    datasets = {}
    for name, spec in _table(raw.get("datasets", {}), "datasets").items():
        spec = _table(spec, f"datasets.{name}")
        validate.reject_unknown(f"datasets.{name}", spec, ("train", "reduced"))
        datasets[name] = {
            "train": {**base, **_table(spec.get("train", {}), f"datasets.{name}.train")},
            "reduced": bool(spec.get("reduced", False)),
        }
    events = None
    if "events" in raw:
        ev = _table(raw["events"], "events")
        validate.reject_unknown(
            "events", ev, ("dataset", "rates", "compressor", "train", "classifier", "reduced")
        )
        compressor = ev.get("compressor", "gz")
        if compressor not in COMPRESSORS:
            raise UsageError(f"events.compressor must be one of {', '.join(COMPRESSORS)}, got {compressor!r}")
        events = {
            "dataset": ev.get("dataset", "nmnist"),
            "rates": _rates(ev.get("rates", [0.1, 0.3, 1.0]), "events.rates"),
            "compressor": compressor,
            "train": {**base, **_table(ev.get("train", {}), "events.train")},
            "classifier": dict(_table(ev.get("classifier", {}), "events.classifier")),
            "reduced": bool(ev.get("reduced", False)),
        }
    if not datasets and events is None:
        raise UsageError(f"{source}: no [datasets.NAME] and no [events]: nothing to run")
    plan = SamplingPlan(
        name=str(raw.get("name", "sampling")), source=source, claim=str(raw.get("claim", "")),
        budget=str(raw.get("budget", "")), seeds=list(seeds), rates=_rates(raw.get("rates", [0.1]), "rates"),
        masks=list(masks), datasets=datasets, events=events,
        evaluate=dict(_table(raw.get("evaluate", {}), "evaluate")), text=text,
    )  # fmt: skip
    check_sampling_plan(plan)
    return plan


def check_sampling_plan(plan: SamplingPlan) -> None:
    """Build every run's settings once, so a bad key fails before any training."""
    validate.reject_unknown("evaluate", plan.evaluate, ("batch_size", "seed", "figure_rate"))
    for dataset in plan.datasets:
        for mask in plan.masks:
            try:
                plan.config(dataset, mask, plan.seeds[0], None, "auto")
            except TypeError as exc:
                raise UsageError(f"datasets.{dataset}.train: {exc}") from None
    if plan.events is not None:
        try:
            plan.event_config(plan.seeds[0], None, "auto")
            plan.classifier_config(plan.seeds[0], None, "auto")
        except TypeError as exc:
            raise UsageError(f"events: {exc}") from None


def load_sampling_plan(path: str | Path) -> SamplingPlan:
    """Read and check a sampling experiment file (``.toml``)."""
    from spikeshield.experiments.plan import read_toml

    raw, text = read_toml(path)
    return parse_sampling_plan(raw, str(path), text)


def shrink_sampling_plan(plan: SamplingPlan, **flags: Any) -> SamplingPlan:
    """A cheaper plan for a first try: ``seeds`` and ``datasets`` (``events`` names the DVS branch)
    select; ``limit_train``, ``limit_test``, ``epochs`` change every run. Recorded in the summary."""
    given = {k: v for k, v in flags.items() if v is not None}
    validate.reject_unknown("shrink", given, SHRINK)
    seeds = plan.seeds
    if "seeds" in given:
        seeds = [s for s in plan.seeds if s in given["seeds"]]
        if len(seeds) != len(set(given["seeds"])):
            raise UsageError(f"--seeds {given['seeds']}: the file has seeds {plan.seeds}")
    datasets, events = plan.datasets, plan.events
    if "datasets" in given:
        unknown = set(given["datasets"]) - set(plan.datasets) - {"events"}
        if unknown:
            raise UsageError(f"--datasets {' '.join(sorted(unknown))}: not in {plan.source}")
        datasets = {k: v for k, v in datasets.items() if k in given["datasets"]}
        events = events if "events" in given["datasets"] else None
    change = {k: given[k] for k in ("limit_train", "limit_test", "epochs") if k in given}
    datasets = {k: {**v, "train": {**v["train"], **change}} for k, v in datasets.items()}
    if events is not None:
        classifier = {k: v for k, v in change.items() if k != "limit_test"}
        events = {
            **events,
            "train": {**events["train"], **change},
            "classifier": {**events["classifier"], **classifier},
        }
    out = replace(plan, seeds=seeds, datasets=datasets, events=events, shrunk={**plan.shrunk, **given})
    check_sampling_plan(out)
    return out


# ---------------------------------------------------------------------------- aggregation
def mean_std(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def aggregate_images(evaluations: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Rows of mean ± std over seeds per (dataset, mask, rate) from each seed's evaluation records;
    ``vs_random``: the spiking sampler's PSNR minus random sampling's, per seed, then mean ± std."""
    rows = []
    for dataset, seeds in evaluations.items():
        by: dict[tuple[str, float], list[dict[str, Any]]] = {}
        for evaluation in seeds:
            for r in evaluation["records"]:
                by.setdefault((r["mask"], r["rate"]), []).append(r)
        for (mask, rate), recs in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            row = {"dataset": dataset, "mask": mask, "rate": rate}
            row["measured_rate"] = mean_std([r["measured_rate"] for r in recs])
            row["psnr"] = mean_std([r["psnr"]["mean"] for r in recs])
            row["ssim"] = mean_std([r["ssim"]["mean"] for r in recs])
            rows.append(row)
        for row in rows:
            if row["dataset"] == dataset and row["mask"] == "spiking":
                for other in ("random", "random-equal-bits"):
                    diffs = _paired(seeds, row["rate"], other)
                    if diffs:
                        row[f"psnr_minus_{other.replace('-', '_')}"] = mean_std(diffs)
    return rows


def _paired(seeds: list[dict[str, Any]], rate: float, other: str) -> list[float]:
    """Per seed, the spiking sampler's mean PSNR minus ``other``'s at ``rate``."""
    out = []
    for evaluation in seeds:
        found = {r["mask"]: r for r in evaluation["records"] if r["rate"] == rate}
        if "spiking" in found and other in found:
            out.append(found["spiking"]["psnr"]["mean"] - found[other]["psnr"]["mean"])
    return out


def aggregate_events(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of mean ± std over seeds per rate of the compression results."""
    by: dict[float, list[dict[str, Any]]] = {}
    for result in results:
        for r in result["rates"]:
            by.setdefault(r["rate"], []).append(r)
    keys = ("events_kept", "bin_ratio", "archive_bytes", "archive_ratio", "random_archive_bytes",
            "random_archive_ratio", "accuracy_sampler", "accuracy_random", "accuracy_full")  # fmt: skip
    return [
        {"rate": rate, **{k: mean_std([r[k] for r in recs]) for k in keys}}
        for rate, recs in sorted(by.items())
    ]


def lossless_baseline(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The raw N-MNIST bytes of every event and each compressor's lossless archive of them (the
    same files for every seed: the first result's figures) and the compressor of the rows."""
    first = results[0]
    return {"bin_bytes": first["bin_bytes"], "lossless_bytes": first["lossless_bytes"],
            "compressor": first["settings"]["compressor"]}  # fmt: skip


def pm(stat: dict[str, float], digits: int = 2, scale: float = 1.0) -> str:
    return f"{stat['mean'] * scale:.{digits}f} ± {stat['std'] * scale:.{digits}f}"


def markdown(summary: dict[str, Any]) -> str:
    """The tables of a summary, as Markdown."""
    reduced = " — REDUCED (CPU budget)" if summary.get("reduced") else ""
    lines = [f"# {summary['name']}{reduced}", ""]
    lines += [f"{n}" for n in summary["notes"]] + [""]
    for dataset in summary["datasets"]:
        rows = [r for r in summary["images"] if r["dataset"] == dataset]
        present = {r["mask"] for r in rows}
        masks = [m for m in (*summary["masks"], "random-equal-bits", "grid-equal-bits") if m in present]
        n = max((r["psnr"]["n"] for r in rows), default=0)
        for metric, digits in (("psnr", 2), ("ssim", 3)):
            title = "PSNR (dB)" if metric == "psnr" else "SSIM"
            diffs = ["spiking − random", "spiking − random-equal-bits"] if metric == "psnr" else []
            lines += [
                f"## {dataset}: {title} vs sampling rate, mean ± std over {n} seed(s){reduced}", "",
                "| rate | measured | equal-bits rate | " + " | ".join([*masks, *diffs]) + " |",
                "|---" * (3 + len(masks) + len(diffs)) + "|",
            ]  # fmt: skip
            for rate in sorted({r["rate"] for r in rows}):
                at = {r["mask"]: r for r in rows if r["rate"] == rate}
                first = at.get("spiking", next(iter(at.values())))
                eq = at.get("random-equal-bits")
                cells = [
                    f"{rate:g}",
                    f"{first['measured_rate']['mean']:.3f}",
                    f"{eq['measured_rate']['mean']:.3f}" if eq else "—",
                ]
                cells += [pm(at[m][metric], digits) if m in at else "—" for m in masks]
                for key in ("psnr_minus_random", "psnr_minus_random_equal_bits")[: len(diffs)]:
                    diff = at.get("spiking", {}).get(key)
                    cells.append(pm(diff) if diff else "—")
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    if summary.get("events"):
        lines += _event_tables(summary, reduced)
    return "\n".join(lines)


def _event_tables(summary: dict[str, Any], reduced: str) -> list[str]:
    ev, base = summary["events"], summary["events_lossless"]
    c, raw = base["compressor"], base["bin_bytes"]
    n = ev[0]["events_kept"]["n"]
    lines = [
        f"## {summary['events_dataset']}: storage of all recordings, lossless baseline{reduced}", "",
        "| stream (every event) | bytes | ratio (raw / bytes) |", "|---|---|---|",
        f"| raw N-MNIST .bin files | {raw:,} | 1.00 |",
    ]  # fmt: skip
    for name, size in base["lossless_bytes"].items():
        used = " (used below)" if name == c else ""
        lines.append(f"| lossless .tar.{name}{used} | {size:,} | {raw / size:.2f} |")
    mb = 1e-6
    lines += [
        "",
        f"## {summary['events_dataset']}: DVS compression (MB; ratio = raw N-MNIST bytes of every event / "
        f"archive bytes) and classifier accuracy (%), mean ± std over {n} seed(s){reduced}",
        "",
        f"| target rate | events kept | sampler + {c}: MB | ratio | random drop + {c}: MB | ratio "
        "| acc. spiking sampler | acc. random drop | acc. full data |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in ev:
        cells = [f"{r['rate']:g}", pm(r["events_kept"], 3), pm(r["archive_bytes"], 3, mb),
                 pm(r["archive_ratio"]), pm(r["random_archive_bytes"], 3, mb), pm(r["random_archive_ratio"]),
                 *(pm(r[f"accuracy_{k}"], 1, 100) for k in ("sampler", "random", "full"))]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def csv_text(summary: dict[str, Any]) -> str:
    lines = ["dataset,mask,rate,measured_rate,psnr_mean,psnr_std,ssim_mean,ssim_std,seeds"]
    for r in summary["images"]:
        lines.append(
            f"{r['dataset']},{r['mask']},{r['rate']},{r['measured_rate']['mean']:.4f},{r['psnr']['mean']:.4f},"
            f"{r['psnr']['std']:.4f},{r['ssim']['mean']:.4f},{r['ssim']['std']:.4f},{r['psnr']['n']}"
        )
    return "\n".join(lines) + "\n"


def write_summary(summary: dict[str, Any], out: Path) -> list[Path]:
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "table.md", markdown(summary))
    atomic_write_text(out / "table.csv", csv_text(summary))
    return [out / "summary.json", out / "table.md", out / "table.csv"]


def append_command(out: Path, command: str) -> None:
    """``COMMAND``: every command that wrote this folder, appended (as ``spikeshield experiment`` does)."""
    from spikeshield.experiments.runner import _append_command

    if command:
        _append_command(out, command, environment().get("source_commit"))


Log = Callable[[str], None]


def ensure_out(plan: SamplingPlan, out: str | Path, overwrite: bool) -> Path:
    """The output folder; one holding another experiment's summary is refused unless ``overwrite``."""
    folder = ensure_dir(out)
    path = folder / "summary.json"
    if path.is_file() and not overwrite:
        saved = read_json(path, "sampling summary")
        if saved.get("plan_fingerprint") != plan.fingerprint():
            raise UsageError(
                f"{folder} holds the summary of another sampling experiment or other settings; pass "
                "--overwrite to replace the summary (runs are kept) or choose another --out"
            )
    return folder
