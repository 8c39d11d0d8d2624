"""Corruptions of event-camera data, on event frames ``[B, T, C, H, W]``.

A frame cell (time bin, polarity channel, pixel) holds the events that fell into it: a count,
a binary flag, or a normalised count. The corruptions model what happens to real event
streams and register in the same registry as the image corruptions (``CORRUPTIONS``):

- ``event-drop`` (level p): each event is lost independently with probability p. Integer
  frames (counts, binary included) are thinned exactly, ``N' ~ Binomial(N, 1 − p)``; frames
  with non-integer values have each cell dropped with probability p.
- ``event-insert`` (level λ): background activity — every cell receives ``Poisson(λ)``
  spurious events (λ = expected events per cell). Binary frames stay binary (a cell with any
  event is 1); count frames add the counts; non-integer frames add them in units of the
  sample's smallest non-zero value (one event under that normalisation).
- ``spatial-jitter`` (level σ, in pixels): the content of each cell moves by an independent
  offset ``round(σ·N(0, 1))`` in x and in y (all events of a cell move together); what lands
  outside the sensor is lost; cells landing together add up (binary frames: stay 1).

All are reproducible from a ``torch.Generator`` (drawn on the CPU) and return the input
unchanged at level 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikeshield import validate
from spikeshield.attacks.noise import CORRUPTIONS, _check_level
from spikeshield.errors import UsageError


def _check_frames(name: str, x: Tensor) -> None:
    if x.dim() != 5:
        raise UsageError(f"{name} works on event frames [B, T, C, H, W], got shape {list(x.shape)}")
    if not x.is_floating_point():
        raise UsageError(f"{name} expects floating-point event frames, got {x.dtype}")
    if bool((x < 0).any()):
        raise UsageError(f"{name} expects non-negative event frames (event counts)")


def _is_integer(x: Tensor) -> bool:
    return bool(torch.equal(x, x.round()))


def _is_binary(x: Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


@CORRUPTIONS.register("event-drop", help="each event lost with probability `level` (event frames)")
def event_drop(x: Tensor, level: float, generator: torch.Generator | None = None) -> Tensor:
    _check_level("event-drop", level)
    _check_frames("event-drop", x)
    validate.probability("event-drop probability", level)
    if level == 0:
        return x
    cpu = x.detach().cpu()
    if _is_integer(cpu):
        kept = torch.binomial(cpu, torch.full_like(cpu, 1.0 - level), generator=generator)
    else:
        keep = torch.rand(cpu.shape, generator=generator) >= level
        kept = cpu * keep
    return kept.to(x.device, x.dtype)


@CORRUPTIONS.register(
    "event-insert", help="background activity: Poisson(`level`) spurious events per cell (event frames)"
)
def event_insert(x: Tensor, level: float, generator: torch.Generator | None = None) -> Tensor:
    _check_level("event-insert", level)
    _check_frames("event-insert", x)
    if level == 0:
        return x
    cpu = x.detach().cpu()
    added = torch.poisson(torch.full_like(cpu, float(level)), generator=generator)
    if _is_binary(cpu):
        out = torch.maximum(cpu, (added > 0).to(cpu.dtype))
    elif _is_integer(cpu):
        out = cpu + added
    else:
        positive = torch.where(cpu > 0, cpu, torch.full_like(cpu, float("inf")))
        unit = positive.flatten(1).min(1).values
        unit = torch.where(torch.isfinite(unit), unit, torch.ones_like(unit))
        out = cpu + added * unit.view(-1, 1, 1, 1, 1)
    return out.to(x.device, x.dtype)


@CORRUPTIONS.register("spatial-jitter", help="each cell's events moved by round(`level`·N(0,1)) pixels")
def spatial_jitter(x: Tensor, level: float, generator: torch.Generator | None = None) -> Tensor:
    _check_level("spatial-jitter", level)
    _check_frames("spatial-jitter", x)
    if level == 0:
        return x
    cpu = x.detach().cpu()
    h, w = cpu.shape[-2:]
    dy = torch.round(level * torch.randn(cpu.shape, generator=generator)).long()
    dx = torch.round(level * torch.randn(cpu.shape, generator=generator)).long()
    rows = torch.arange(h).view(h, 1).expand(h, w)
    cols = torch.arange(w).view(1, w).expand(h, w)
    new_rows, new_cols = rows + dy, cols + dx
    inside = (new_rows >= 0) & (new_rows < h) & (new_cols >= 0) & (new_cols < w) & (cpu != 0)
    plane = torch.arange(cpu[..., 0, 0].numel()).view(cpu.shape[:-2]) * (h * w)
    target = plane[..., None, None] + new_rows * w + new_cols
    out = torch.zeros(cpu.numel(), dtype=cpu.dtype)
    if _is_binary(cpu):
        out.scatter_reduce_(0, target[inside], cpu[inside], reduce="amax")
    else:
        out.index_add_(0, target[inside], cpu[inside])
    return out.view(cpu.shape).to(x.device, x.dtype)
