"""PSNR and SSIM against the sampling rate, the spiking sampler beside the baselines.

:func:`evaluate_models` runs every model of a group (the spiking sampler's run and the
baselines' runs of one dataset and seed) over the same test images at each rate. At each image
the baselines keep exactly as many pixels as the spiking sampler kept there (equal *measured*
rate); without a spiking model they keep ``round(rate · H·W)``. Random masks come from one
stream per test image (its index, the rate and the seed), so they do not depend on the batch.
The models are left as they were (eval mode inside, state restored).

Equal storage (``equal_bits``): an image-dependent mask (the spiking sampler's, or top-k by
magnitude) must be stored with the kept values, a random or grid mask is regenerated from its
seed. Counting 8 bits per kept value and channel and ``log2 C(N, k)`` bits for the positions of
``k`` of ``N`` pixels (the enumerative-coding minimum), the random and grid baselines are also
evaluated keeping ``k + ⌈log2 C(N, k) / (8·C)⌉`` pixels: the same bits as the sampler's ``k``.
These records are named ``random-equal-bits`` and ``grid-equal-bits``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from spikeshield.data import ArrayDataset
from spikeshield.errors import UsageError
from spikeshield.preserve import preserved
from spikeshield.progress import Progress
from spikeshield.sampling.masks import check_rate
from spikeshield.sampling.metrics import psnr, ssim
from spikeshield.sampling.model import SamplingModel
from spikeshield.streams import SampleStreams


def measured_rate(mask: Tensor, x: Tensor, events: bool) -> Tensor:
    """``[B]`` kept fraction: of the pixels (images), or of the events (event frames)."""
    if not events:
        return mask.flatten(1).mean(1)
    counts = x.sum(2, keepdim=True)
    return (mask * counts).flatten(1).sum(1) / counts.flatten(1).sum(1).clamp(min=1)


def position_bits(counts: Tensor, pixels: int) -> Tensor:
    """``log2 C(pixels, k)`` for each ``k`` of ``counts``: the bits that say which pixels were kept."""
    k = counts.double()
    n = torch.tensor(float(pixels), dtype=torch.float64)
    return (torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)) / math.log(2)


def equal_bits_counts(counts: Tensor, pixels: int, channels: int) -> Tensor:
    """Pixels a seeded (position-free) mask may keep for the bits of ``counts`` image-chosen ones."""
    extra = torch.ceil(position_bits(counts, pixels) / (8 * channels)).long()
    return (counts + extra).clamp(max=pixels)


def _summary(values: list[Tensor]) -> dict[str, float]:
    v = torch.cat(values).double()
    finite = v[torch.isfinite(v)]
    return {"mean": float(v.mean()), "std": float(v.std()) if len(v) > 1 else 0.0, "finite": len(finite)}


@torch.no_grad()
def evaluate_models(
    models: dict[str, SamplingModel],
    data: ArrayDataset,
    rates: Sequence[float],
    *,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
    equal_bits: bool = True,
) -> list[dict[str, Any]]:
    """One record per model and rate: ``{"mask", "rate", "measured_rate", "psnr", "ssim"}``, each
    metric ``{"mean", "std", "finite"}`` over the test images (``finite``: how many were not an
    exact reconstruction, whose PSNR is ``inf``).

    Raises:
        UsageError: event data (evaluated by compression instead: :mod:`.compress`).
    """
    rates = [check_rate(r, "rates") for r in rates]
    if data.info is not None and data.info.kind == "events":
        raise UsageError("PSNR/SSIM curves are for images; event data is evaluated by 'sample compress'")
    records = []
    with preserved(*models.values()):
        for m in models.values():
            m.eval()
        for rate in rates:
            acc: dict[str, dict[str, list[Tensor]]] = {}
            start = 0
            batches = data.batches(batch_size, device=device)
            total = -(-len(data) // batch_size)
            for x, _ in Progress(batches, total=total, desc=f"rate {rate:g}", enabled=progress):
                index = range(start, start + len(x))
                start += len(x)
                counts = None
                jobs = [(kind, model, None) for kind, model in models.items()]
                if "spiking" in models:
                    reference = models["spiking"].masks(x, rate)
                    counts = reference.flatten(1).sum(1).long()
                    if equal_bits:
                        more = equal_bits_counts(counts, x[0, 0].numel(), x.shape[1])
                        jobs += [
                            (f"{k}-equal-bits", models[k], more) for k in ("random", "grid") if k in models
                        ]
                for name, model, more in jobs:
                    rng = SampleStreams.keyed(seed, index, "random-mask", rate, more is not None)
                    mask = (
                        reference
                        if name == "spiking"
                        else model.masks(x, rate, counts if more is None else more, rng)
                    )
                    recon = model.reconstructor(x, mask)
                    slot = acc.setdefault(name, {"psnr": [], "ssim": [], "rate": []})
                    slot["rate"].append(measured_rate(mask, x, events=False).cpu())
                    slot["psnr"].append(psnr(recon, x).cpu())
                    slot["ssim"].append(ssim(recon, x).cpu())
            for kind, values in acc.items():
                record = {"mask": kind, "rate": rate, "measured_rate": _summary(values["rate"])["mean"]}
                record["psnr"] = _summary(values["psnr"])
                record["ssim"] = _summary(values["ssim"])
                records.append(record)
    return records
