"""Corruptions of event-camera data, on event frames ``[B, T, C, H, W]``.

A frame cell (time bin, polarity channel, pixel) holds the events that fell into it. What a
cell's value means is a property of the dataset, never guessed from a batch: the ``values``
option says it (``spikeshield.attacks.evaluate_robustness`` takes it from the dataset's
``meta["event_values"]``; every registered event dataset holds ``counts``):

- ``counts`` (default): integer event counts;
- ``binary``: 1 where a cell holds any event, else 0;
- ``normalised``: counts divided by a per-sample unit (one event = the sample's smallest
  non-zero value).

The corruptions model what happens to real event streams and register in the same registry as
the image corruptions (``CORRUPTIONS``):

- ``event-drop`` (level p): each event is lost independently with probability p. Counts (and
  binary flags) are thinned exactly, ``N' ~ Binomial(N, 1 − p)``; normalised frames have each
  cell dropped with probability p.
- ``event-insert`` (level λ): background activity — every cell receives ``Poisson(λ)``
  spurious events (λ = expected events per cell). Binary frames stay binary (a cell with any
  event is 1); counts add; normalised frames add them in units of the sample's own unit.
- ``spatial-jitter`` (level σ, in pixels): the content of each cell moves by an independent
  offset ``round(σ·N(0, 1))`` in x and in y (all events of a cell move together); what lands
  outside the sensor is lost; cells landing together add up (binary frames: stay 1).

Each sample's draws come from its own stream (see :mod:`spikeshield.attacks.noise`), drawn on the
CPU; all return the input unchanged at level 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from spikeshield import validate
from spikeshield.attacks.noise import CORRUPTIONS, Corruption, RandomSource, _check_level
from spikeshield.errors import UsageError
from spikeshield.streams import SampleStreams

EVENT_VALUES = ("counts", "binary", "normalised")


def event_corruption(name: str, help: str) -> Callable[[Corruption], Corruption]:
    """Register an event-frame corruption (it takes the ``values`` option)."""

    def decorator(fn: Corruption) -> Corruption:
        fn.options = ("values",)  # type: ignore[attr-defined]
        return CORRUPTIONS.register(name, help=help)(fn)

    return decorator


def _check_frames(name: str, x: Tensor, values: str) -> Tensor:
    """``x`` on the CPU, after checking that it holds event frames of the stated kind."""
    if x.dim() != 5:
        raise UsageError(f"{name} works on event frames [B, T, C, H, W], got shape {list(x.shape)}")
    if not x.is_floating_point():
        raise UsageError(f"{name} expects floating-point event frames, got {x.dtype}")
    if values not in EVENT_VALUES:
        raise UsageError(f"{name}: values must be one of {', '.join(EVENT_VALUES)}, got {values!r}")
    cpu = x.detach().cpu()
    if bool((cpu < 0).any()):
        raise UsageError(f"{name} expects non-negative event frames (event counts)")
    if values == "counts" and not torch.equal(cpu, cpu.round()):
        raise UsageError(f"{name}: values='counts' needs integer event counts; use values='normalised'")
    if values == "binary" and not bool(((cpu == 0) | (cpu == 1)).all()):
        raise UsageError(f"{name}: values='binary' needs frames of 0s and 1s")
    return cpu


def _each(rng: RandomSource, cpu: Tensor, fn: Callable[[Tensor, torch.Generator], Tensor]) -> Tensor:
    """``fn(sample, its generator)`` for every sample of the batch, stacked."""
    return SampleStreams.of(rng, len(cpu)).draw(lambda g, i: fn(cpu[i], g), cpu.shape[1:])


@event_corruption("event-drop", help="each event lost with probability `level` (event frames)")
def event_drop(x: Tensor, level: float, rng: RandomSource = None, *, values: str = "counts") -> Tensor:
    _check_level("event-drop", level)
    cpu = _check_frames("event-drop", x, values)
    validate.probability("event-drop probability", level)
    if level == 0:
        return x
    if values == "normalised":
        kept = cpu * (_each(rng, cpu, lambda s, g: torch.rand(s.shape, generator=g)) >= level)
    else:
        kept = _each(rng, cpu, lambda s, g: torch.binomial(s, torch.full_like(s, 1.0 - level), generator=g))
    return kept.to(x.device, x.dtype)


@event_corruption(
    "event-insert", help="background activity: Poisson(`level`) spurious events per cell (event frames)"
)
def event_insert(x: Tensor, level: float, rng: RandomSource = None, *, values: str = "counts") -> Tensor:
    _check_level("event-insert", level)
    cpu = _check_frames("event-insert", x, values)
    if level == 0:
        return x
    added = _each(rng, cpu, lambda s, g: torch.poisson(torch.full_like(s, float(level)), generator=g))
    if values == "binary":
        out = torch.maximum(cpu, (added > 0).to(cpu.dtype))
    elif values == "counts":
        out = cpu + added
    else:
        positive = torch.where(cpu > 0, cpu, torch.full_like(cpu, float("inf")))
        unit = positive.flatten(1).min(1).values
        unit = torch.where(torch.isfinite(unit), unit, torch.ones_like(unit))
        out = cpu + added * unit.view(-1, 1, 1, 1, 1)
    return out.to(x.device, x.dtype)


@event_corruption("spatial-jitter", help="each cell's events moved by round(`level`·N(0,1)) pixels")
def spatial_jitter(x: Tensor, level: float, rng: RandomSource = None, *, values: str = "counts") -> Tensor:
    _check_level("spatial-jitter", level)
    cpu = _check_frames("spatial-jitter", x, values)
    if level == 0:
        return x
    h, w = cpu.shape[-2:]
    offsets = _each(rng, cpu, lambda s, g: torch.round(level * torch.randn(2, *s.shape, generator=g)).long())
    dy, dx = offsets[:, 0], offsets[:, 1]
    rows = torch.arange(h).view(h, 1).expand(h, w)
    cols = torch.arange(w).view(1, w).expand(h, w)
    new_rows, new_cols = rows + dy, cols + dx
    inside = (new_rows >= 0) & (new_rows < h) & (new_cols >= 0) & (new_cols < w) & (cpu != 0)
    plane = torch.arange(cpu[..., 0, 0].numel()).view(cpu.shape[:-2]) * (h * w)
    target = plane[..., None, None] + new_rows * w + new_cols
    out = torch.zeros(cpu.numel(), dtype=cpu.dtype)
    if values == "binary":
        out.scatter_reduce_(0, target[inside], cpu[inside], reduce="amax")
    else:
        out.index_add_(0, target[inside], cpu[inside])
    return out.view(cpu.shape).to(x.device, x.dtype)
