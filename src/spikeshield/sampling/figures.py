"""Figures of the sampling reproduction (PNG, headless; skipped with a warning without matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from spikeshield.analysis.plots import save_figure, subplots
from spikeshield.sampling.model import SamplingModel

COLORS = {"spiking": "tab:red", "random": "tab:blue", "grid": "tab:green", "magnitude": "tab:gray"}


def rate_curves(rows: list[dict[str, Any]], dataset: str, path: str | Path, label: str = "") -> Path | None:
    """PSNR and SSIM against the measured sampling rate, one line per mask (± std over seeds)."""
    made = subplots(1, 2, figsize=(10, 4))
    if made is None:
        return None
    fig, axes = made
    for mask in dict.fromkeys(r["mask"] for r in rows if r["dataset"] == dataset):
        mine = sorted(
            (r for r in rows if r["dataset"] == dataset and r["mask"] == mask), key=lambda r: r["rate"]
        )
        xs = [100 * r["measured_rate"]["mean"] for r in mine]
        for ax, key in zip(axes, ("psnr", "ssim")):
            ys, es = [r[key]["mean"] for r in mine], [r[key]["std"] for r in mine]
            base = mask.removesuffix("-equal-bits")  # equal storage: the baseline's colour, dashed
            style = "--" if base != mask else "-"
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=mask, color=COLORS.get(base), ls=style)
    for ax, name in zip(axes, ("PSNR (dB)", "SSIM")):
        ax.set_xlabel("sampling rate (% of pixels kept)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"{dataset}: reconstruction vs sampling rate {label}".strip())
    fig.tight_layout()
    return save_figure(fig, path)


@torch.no_grad()
def mask_gallery(
    models: dict[str, SamplingModel], x: Tensor, rate: float, path: str | Path, title: str
) -> Path | None:
    """Originals on top, then per mask source its mask and its reconstruction, at ``rate``
    (baselines keep as many pixels per image as the spiking sampler)."""
    rows: list[tuple[str, Tensor]] = [("original", x)]
    counts = None
    if "spiking" in models:
        counts = models["spiking"].masks(x, rate).flatten(1).sum(1).long()
    generator = torch.Generator().manual_seed(0)
    for kind, model in models.items():
        mask = model.masks(x, rate, counts, generator)
        rows += [(f"{kind} mask", mask.expand_as(x[:, :1])), (f"{kind} recon.", model.reconstructor(x, mask))]
    n = len(x)
    made = subplots(len(rows), n, figsize=(1.3 * n + 1.2, 1.3 * len(rows)), squeeze=False)
    if made is None:
        return None
    fig, axes = made
    for r, (name, images) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            img = images[c].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def event_accuracy(rows: list[dict[str, Any]], path: str | Path, title: str) -> Path | None:
    """Classifier accuracy against the fraction of events kept: sampler vs random dropping."""
    made = subplots(figsize=(5.5, 4))
    if made is None:
        return None
    fig, ax = made
    for key, label, color in (
        ("accuracy_sampler", "spiking sampler", "tab:red"),
        ("accuracy_random", "random drop", "tab:blue"),
        ("accuracy_full", "full data", "black"),
    ):
        xs = [100 * r["events_kept"]["mean"] for r in rows]
        ys, es = [100 * r[key]["mean"] for r in rows], [100 * r[key]["std"] for r in rows]
        style = "--" if key == "accuracy_full" else "-"
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=label, color=color, ls=style)
    ax.set_xlabel("events kept (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def event_gallery(
    originals: Sequence[Tensor], kept: dict[str, Sequence[Tensor]], path: str | Path, title: str
) -> Path | None:
    """Event frames summed over time (ON − OFF) of a few recordings: original and each kept set."""
    rows = [("original", originals), *kept.items()]
    n = len(originals)
    made = subplots(len(rows), n, figsize=(1.4 * n + 1.2, 1.4 * len(rows)), squeeze=False)
    if made is None:
        return None
    fig, axes = made
    for r, (name, frames) in enumerate(rows):
        for c in range(n):
            f = frames[c].float().sum(0)
            axes[r][c].imshow((f[1] - f[0]).numpy(), cmap="bwr", vmin=-4, vmax=4)
            axes[r][c].set_xticks([])
            axes[r][c].set_yticks([])
        axes[r][0].set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
