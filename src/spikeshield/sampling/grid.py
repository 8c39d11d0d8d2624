"""Run a :class:`~.experiment.SamplingPlan`: train, evaluate, compress, aggregate (resumable)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikeshield.data import ArrayDataset
from spikeshield.data.events import events_to_frames
from spikeshield.data.nmnist import SENSOR
from spikeshield.environment import environment
from spikeshield.errors import DataError
from spikeshield.io import atomic_write_json, read_json
from spikeshield.runs import load_model
from spikeshield.sampling.compress import (
    COMPRESSORS,
    EVENT_BYTES,
    Recording,
    archive_bytes,
    encode,
    random_keep,
    read_back,
    read_recordings,
    sampler_keep,
    write_compressed,
)
from spikeshield.sampling.evaluate import evaluate_models
from spikeshield.sampling.experiment import (
    Log,
    SamplingPlan,
    aggregate_events,
    aggregate_images,
    append_command,
    ensure_out,
    lossless_baseline,
    write_summary,
)
from spikeshield.sampling.figures import event_accuracy, event_gallery, mask_gallery, rate_curves
from spikeshield.sampling.model import MODEL_FILE, SamplingModel, load_sampling_model
from spikeshield.sampling.train import load_split, train_sampling
from spikeshield.training import accuracy, resolve_device, train
from spikeshield.training.trainer import METRICS_FILE as METRICS
from spikeshield.training.trainer import MODEL_FILE as CLASSIFIER_FILE

REDUCED = "REDUCED (CPU budget)"


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reuse(path: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The result saved at ``path`` if it was made with exactly ``settings``."""
    if path.is_file():
        saved = read_json(path, "result")
        if saved.get("settings") == settings:
            return saved
    return None


def image_cell(
    plan: SamplingPlan, dataset: str, seed: int, folder: Path, data_root: str | None, device: str, log: Log
) -> tuple[dict[str, Any], dict[str, SamplingModel]]:
    """Train every mask source's run of one dataset and seed, then evaluate them together."""
    models = {}
    for mask in plan.masks:
        log(f"{dataset} seed {seed}: {mask}")
        config = plan.config(dataset, mask, seed, data_root, device)
        train_sampling(config, folder / mask)
        models[mask] = load_sampling_model(folder / mask, resolve_device(device))[0]
    settings = {
        "rates": plan.rates,
        "seed": plan.evaluate.get("seed", 0),
        "limit_test": config.limit_test,
        "weights": {m: file_digest(folder / m / MODEL_FILE) for m in plan.masks},
    }
    saved = reuse(folder / "evaluation.json", settings)
    if saved is not None:
        return saved, models
    start = time.perf_counter()
    records = evaluate_models(
        models, load_split(config, "test"), plan.rates, seed=settings["seed"],
        batch_size=plan.evaluate.get("batch_size", 256), device=resolve_device(device),
    )  # fmt: skip
    result = {"settings": settings, "records": records, "seconds": time.perf_counter() - start,
              "environment": environment(device if device != "auto" else None)}  # fmt: skip
    atomic_write_json(folder / "evaluation.json", result)
    return result, models


def _frames(events_list: list[Any], time_steps: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([events_to_frames(e, time_steps, SENSOR, "time") for e in events_list]))


def _check_read_back(path: Path, recordings: list[Recording], keeps: list[np.ndarray]) -> dict[str, Any]:
    """Read the written archive with our reader; every recording must be exactly its kept events."""
    expected = {r.name: r.events.select(k) for r, k in zip(recordings, keeps)}
    found = dict(read_back(path))
    for name, e in expected.items():
        got = found.get(name)
        if got is None or not all(np.array_equal(getattr(got, a), getattr(e, a)) for a in "xytp"):
            raise DataError(f"{path}: {name} does not read back to the kept events")
    if len(found) != len(expected):
        raise DataError(f"{path}: {len(found)} recordings read back, {len(expected)} written")
    return found


def event_cell(
    plan: SamplingPlan,
    seed: int,
    folder: Path,
    data_root: str | None,
    device: str,
    log: Log,
    gallery_path: Path | None = None,
    label: str = "",
) -> dict[str, Any]:
    """The DVS branch for one seed: sampler and classifier runs; the lossless baseline (every
    event, archived by each compressor of :data:`~.compress.COMPRESSORS`); then per rate compress
    with the plan's compressor, write, read back, and classify the test recordings (sampler vs
    random dropping at the same count);
    ``gallery_path``: where to draw a few test recordings, original and kept at the lowest rate
    (``label`` appended to its title)."""
    assert plan.events is not None
    dev = resolve_device(device)
    config = plan.event_config(seed, data_root, device)
    log(f"events seed {seed}: sampler")
    train_sampling(config, folder / "sampler")
    log(f"events seed {seed}: classifier")
    train(
        plan.classifier_config(seed, data_root, device),
        folder / "classifier",
        resume=True,
        log=lambda _: None,
    )
    compressor = plan.events["compressor"]
    settings = {
        "rates": plan.events["rates"],
        "compressor": compressor,
        "seed": seed,
        "weights": {
            "sampler": file_digest(folder / "sampler" / MODEL_FILE),
            "classifier": file_digest(folder / "classifier" / CLASSIFIER_FILE),
        },
    }
    saved = reuse(folder / "compression.json", settings)
    if saved is not None:
        return saved
    model = load_sampling_model(folder / "sampler", dev)[0]
    classifier = load_model(folder / "classifier").to(dev).eval()
    recordings = read_recordings(data_root)
    tests = [i for i, r in enumerate(recordings) if r.split == "test"]
    labels = torch.tensor([recordings[i].label for i in tests])
    t = config.time_steps

    def acc(events_list: list[Any]) -> float:
        return accuracy(classifier, ArrayDataset(_frames(events_list, t), labels, scale=1.0), device=dev)

    full = acc([recordings[i].events for i in tests])
    log(f"events seed {seed}: lossless baseline ({', '.join(COMPRESSORS)})")
    members = encode(recordings)
    lossless = {c: len(archive_bytes(members, c)) for c in COMPRESSORS}
    rows, gallery = [], {}
    for rate in plan.events["rates"]:
        log(f"events seed {seed}: compress at rate {rate:g}")
        keeps = sampler_keep(model, recordings, rate, t, device=dev)
        kinds = {"sampler": keeps, "random": random_keep(keeps, seed)}
        row: dict[str, Any] = {"rate": rate, "accuracy_full": full}
        for kind, kept in kinds.items():
            path = folder / f"{kind}-r{rate:g}.tar.{compressor}"
            info = write_compressed(path, recordings, kept, lossless_bytes=lossless[compressor])
            found = _check_read_back(path, recordings, kept)
            row[f"accuracy_{kind}"] = acc([found[recordings[i].name] for i in tests])
            row[kind] = info
            gallery[f"{kind} {rate:g}"] = [_frames([found[recordings[i].name]], t)[0] for i in tests[:6]]
        sizes = ("events_kept", "archive_bytes", "archive_ratio")
        row.update({k: row["sampler"][k] for k in ("bin_ratio", *sizes)})
        row.update({f"random_{k}": row["random"][k] for k in sizes})
        rows.append(row)
    originals = [_frames([recordings[i].events], t)[0] for i in tests[:6]]
    shown = {k: v for k, v in gallery.items() if k.split()[1] == f"{min(plan.events['rates']):g}"}
    if gallery_path is not None:
        title = f"N-MNIST test recordings (ON − OFF over time), seed {seed} {label}"
        event_gallery(originals, shown, gallery_path, title.strip())
    result = {"settings": settings, "rates": rows, "test_recordings": len(tests),
              "bin_bytes": EVENT_BYTES * sum(len(r.events) for r in recordings), "lossless_bytes": lossless,
              "classifier_test_accuracy_loader": read_json(folder / "classifier" / METRICS)["test_accuracy"],
              "environment": environment(device if device != "auto" else None)}  # fmt: skip
    atomic_write_json(folder / "compression.json", result)
    return result


def run_sampling_plan(
    plan: SamplingPlan,
    out_dir: str | Path,
    *,
    data_root: str | None = None,
    device: str = "auto",
    overwrite: bool = False,
    command: str = "",
    log: Log = print,
) -> dict[str, Any]:
    """Run every selected cell of ``plan`` into ``out_dir`` and write the summary and figures."""
    out = ensure_out(plan, out_dir, overwrite)
    start = time.perf_counter()
    reduced = any(d["reduced"] for d in plan.datasets.values()) or bool(
        plan.events and plan.events["reduced"]
    )
    label = f"— {REDUCED}" if reduced else ""
    evaluations: dict[str, list[dict[str, Any]]] = {}
    for dataset in plan.datasets:
        evaluations[dataset] = []
        for seed in plan.seeds:
            folder = out / "runs" / dataset / f"s{seed}"
            result, models = image_cell(plan, dataset, seed, folder, data_root, device, log)
            evaluations[dataset].append(result)
            if seed == plan.seeds[0]:
                x = load_split(
                    plan.config(dataset, plan.masks[0], seed, data_root, device), "test"
                ).tensors()[0][:8]
                rate = plan.evaluate.get("figure_rate", plan.rates[len(plan.rates) // 2])
                mask_gallery(models, x.to(resolve_device(device)), rate, out / f"masks_{dataset}.png",
                             f"{dataset}, rate {rate:g}, seed {seed} {label}")  # fmt: skip
    events = []
    if plan.events is not None:
        for seed in plan.seeds:
            gallery = out / "events_gallery.png" if seed == plan.seeds[0] else None
            events.append(
                event_cell(plan, seed, out / "events" / f"s{seed}", data_root, device, log, gallery, label)
            )
    images = aggregate_images(evaluations)
    summary = {
        "name": plan.name, "claim": plan.claim, "reduced": reduced, "budget": plan.budget,
        "masks": plan.masks, "datasets": list(plan.datasets), "images": images,
        "events_dataset": plan.events["dataset"] if plan.events else None,
        "events": aggregate_events(events) if events else [],
        "events_lossless": lossless_baseline(events) if events else None,
        "notes": _notes(plan, reduced), "plan_fingerprint": plan.fingerprint(), "plan_definition": plan.text,
        "shrunk": plan.shrunk, "command": command, "seconds": time.perf_counter() - start,
        "environment": environment(device if device != "auto" else None),
    }  # fmt: skip
    write_summary(summary, out)
    for dataset in plan.datasets:
        rate_curves(images, dataset, out / f"psnr_{dataset}.png", label)
    if events:
        event_accuracy(summary["events"], out / "events_accuracy.png",
                       f"{plan.events['dataset']}: classifier on compressed events {label}")  # fmt: skip
    append_command(out, command)
    return summary


def _notes(plan: SamplingPlan, reduced: bool) -> list[str]:
    notes = [f"Claim under test: {plan.claim}"] if plan.claim else []
    if plan.budget:
        notes.append(f"Budget{' (' + REDUCED + ')' if reduced else ''}: {plan.budget}")
    if plan.shrunk:
        notes.append(f"Shrunk from {plan.source} with {plan.shrunk}.")
    notes.append(
        "Baselines keep, per test image, exactly as many pixels as the spiking sampler kept there; each mask "
        "source has its own reconstructor of the same architecture and budget."
    )
    return notes
