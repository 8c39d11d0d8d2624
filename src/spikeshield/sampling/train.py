"""Training a sampling run: the mask source and the reconstructor end to end on MSE.

The loss is ``MSE(x̂, x)`` (plus the rate penalty for the ``penalty`` rule); its gradient
reaches the spiking sampler through the keep spikes' surrogate gradient (BPTT over the
sampler's T steps). Each batch trains at one target rate drawn from ``rates``, so one run
serves every rate (a reconstruction choice; the ``penalty`` rule trains one rate per run).
Adam with a cosine schedule; seeded; the run folder gets ``config.json``, ``model.safetensors``
and ``metrics.json`` (atomic writes). A finished run is never retrained or overwritten; an
unfinished one (no ``metrics.json`` marked complete) is trained again from the start.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from spikeshield.data import ArrayDataset, dataset_info, load_dataset
from spikeshield.environment import environment
from spikeshield.errors import UsageError
from spikeshield.io import atomic_write_json, ensure_dir, read_json
from spikeshield.progress import Progress
from spikeshield.sampling.evaluate import measured_rate
from spikeshield.sampling.model import (
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    SampleConfig,
    SamplingModel,
    model_spec,
)
from spikeshield.sampling.sampler import rate_penalty
from spikeshield.training.checkpoint import save_model
from spikeshield.training.evaluate import resolve_device


def load_split(config: SampleConfig, split: str) -> ArrayDataset:
    """The run's train or test data (a fixed subset when ``limit_train`` / ``limit_test`` is set)."""
    limit = config.limit_train if split == "train" else config.limit_test
    return load_dataset(config.dataset, split, config.data_root, limit=limit, **config.data_options())


def finished(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a complete sampling run."""
    path = Path(run_dir) / METRICS_FILE
    return path.is_file() and bool(read_json(path, "sampling metrics").get("complete"))


def train_sampling(config: SampleConfig, out: str | Path, progress: bool | None = None) -> dict[str, Any]:
    """Train one sampling run into ``out``; returns its metrics (those saved if already finished).

    Raises:
        UsageError: ``out`` holds a finished run with other settings.
    """
    out = ensure_dir(out)
    if finished(out):
        saved = read_json(out / CONFIG_FILE, "sampling run config").get("sample", {})
        where = ("data_root", "device")  # where the data and the work are is not a setting
        if {k: v for k, v in saved.items() if k not in where} != {
            k: v for k, v in config.to_dict().items() if k not in where
        }:
            raise UsageError(f"{out} holds a finished sampling run with other settings; choose another --out")
        return read_json(out / METRICS_FILE, "sampling metrics")
    device = resolve_device(config.device)
    atomic_write_json(
        out / CONFIG_FILE, {"sample": config.to_dict(), "environment": environment(str(device))}
    )
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    data = load_split(config, "train")
    model = SamplingModel(config, dataset_info(config.dataset)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    batches = math.ceil(len(data) / config.batch_size)
    history, step, start = [], 0, time.perf_counter()
    model.train()
    for epoch in range(config.epochs):
        bar = Progress(
            data.batches(config.batch_size, shuffle=True, generator=generator, device=device),
            total=batches,
            desc=f"{config.mask} epoch {epoch + 1}/{config.epochs}",
            enabled=progress,
        )
        totals = {"loss": 0.0, "mse": 0.0, "rate": 0.0}
        for x, _ in bar:
            rate = config.rates[int(torch.randint(len(config.rates), (1,), generator=generator))]
            for group in optimizer.param_groups:
                group["lr"] = 0.5 * config.lr * (1 + math.cos(math.pi * step / (config.epochs * batches)))
            recon, mask = model(x, rate, rng=generator)
            mse = F.mse_loss(recon, x)
            loss = mse + (rate_penalty(mask, rate, config.penalty_weight) if config.rule == "penalty" else 0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            measured = float(measured_rate(mask.detach(), x, config.events).mean())
            for key, value in (("loss", loss.item()), ("mse", mse.item()), ("rate", measured)):
                totals[key] += value / batches
            bar.set(mse=mse.item())
        history.append({"epoch": epoch + 1, **totals})
    seconds = time.perf_counter() - start
    save_model(out / MODEL_FILE, model, model_spec(config))
    metrics = {"complete": True, "train_seconds": seconds, "train_samples": len(data), "history": history}
    atomic_write_json(out / METRICS_FILE, metrics)
    return metrics
