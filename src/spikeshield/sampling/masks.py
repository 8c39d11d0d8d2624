"""Keep/mask patterns at a given sampling rate: the exact-count rules every sampler shares.

A mask is 1 where a pixel (or, for events, a pixel in a time bin) is kept and 0 where it is
masked. The *sampling rate* is the kept fraction: of the pixels of an image, or of the events
of a recording. Baselines are compared with the spiking sampler at equal *measured* rate: each
gets, per sample, the number of pixels the sampler kept for that sample (``counts``).

- :func:`random_mask`: ``counts[b]`` pixels drawn uniformly without replacement;
- :func:`grid_mask`: a regular lattice; the first ``k`` pixels of an ordered-dither (Bayer)
  ranking, so that every ``k`` gives an evenly spread pattern (``k = N/4`` is exactly every other
  row and column);
- :func:`magnitude_mask`: the ``k`` pixels of largest ``|x|`` (summed over channels), an
  image-aware heuristic the issue calls the upper bound;
- :func:`topk_mask`: the ``k`` largest scores, ties broken by position (the rule the others use);
- :func:`event_budget_mask`: for event frames, the highest-scoring (bin, pixel) cells until
  ``rate`` of the events are kept.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from spikeshield import validate
from spikeshield.streams import SampleStreams

MASK_KINDS = ("spiking", "random", "grid", "magnitude")


def check_rate(rate: object, name: str = "rate") -> float:
    """A sampling rate in (0, 1]; anything else is a :class:`~spikeshield.errors.UsageError`."""
    return validate.in_range(name, rate, 0.0, 1.0, low_open=True)


def keep_counts(rate: float, pixels: int, batch: int, device: torch.device | str = "cpu") -> Tensor:
    """``[batch]`` pixels to keep at ``rate``: ``round(rate · pixels)``, at least 1."""
    k = max(1, min(pixels, round(check_rate(rate) * pixels)))
    return torch.full((batch,), k, dtype=torch.long, device=device)


def topk_mask(scores: Tensor, counts: Tensor) -> Tensor:
    """1 at the ``counts[b]`` largest entries of each ``scores[b]`` (any shape after the batch
    axis), 0 elsewhere; ties are broken by position, so exactly ``counts[b]`` are kept."""
    flat = scores.reshape(len(scores), -1)
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return (ranks < counts.view(-1, 1)).to(scores.dtype).reshape(scores.shape)


def random_mask(
    shape: tuple[int, ...], counts: Tensor, rng: SampleStreams | torch.Generator | None = None
) -> Tensor:
    """Uniform random masks of ``shape`` (``[B, ...]``) keeping exactly ``counts[b]`` entries each,
    drawn on the CPU from ``rng``: one generator, or one stream per sample
    (:class:`~spikeshield.streams.SampleStreams`, so a sample's mask does not depend on its batch)."""
    own = isinstance(rng, SampleStreams)
    scores = rng.uniform(shape[1:]) if own else torch.rand(shape, generator=rng)  # type: ignore[union-attr]
    return topk_mask(scores, counts.cpu()).to(counts.device)


@functools.cache
def bayer_ranks(height: int, width: int) -> Tensor:
    """``[H, W]`` ranks 0..H·W−1 of an ordered-dither (Bayer) matrix cropped to H×W: the first
    ``k`` ranks form an evenly spread lattice for every ``k`` (Bayer, ICC 1973)."""
    m = torch.zeros(1, 1, dtype=torch.long)
    while m.shape[0] < max(height, width):
        m = torch.cat([torch.cat([4 * m, 4 * m + 2], 1), torch.cat([4 * m + 3, 4 * m + 1], 1)], 0)
    crop = m[:height, :width].reshape(-1)
    ranks = torch.empty_like(crop)
    ranks[torch.argsort(crop, stable=True)] = torch.arange(len(crop))
    return ranks.reshape(height, width)


def grid_mask(shape: tuple[int, ...], counts: Tensor) -> Tensor:
    """Regular-lattice masks of ``shape`` (``[B, 1, H, W]``): the ``counts[b]`` first pixels of
    :func:`bayer_ranks`."""
    height, width = shape[-2:]
    scores = -bayer_ranks(height, width).to(counts.device, torch.float32)
    return topk_mask(scores.expand(*shape), counts)


def magnitude_mask(x: Tensor, counts: Tensor) -> Tensor:
    """``[B, 1, H, W]`` masks of the ``counts[b]`` pixels of largest ``|x|`` summed over channels."""
    return topk_mask(x.abs().sum(1, keepdim=True), counts)


def event_budget_mask(scores: Tensor, events: Tensor, rate: float) -> Tensor:
    """Masks of (bin, pixel) cells keeping ``rate`` of each sample's events.

    Args:
        scores: ``[B, T, 1, H, W]`` how much the sampler wants each cell.
        events: ``[B, T, 1, H, W]`` events in each cell (both polarities).
        rate: fraction of the events to keep, in (0, 1].

    Cells are taken in descending score (ties by position) while the events kept so far are
    below ``rate`` of the sample's events, so the kept fraction is the smallest one ≥ ``rate``
    that whole cells allow. Cells without events are never kept (they cost and carry nothing).
    """
    rate = check_rate(rate)
    b = len(scores)
    flat_s = scores.reshape(b, -1).masked_fill(events.reshape(b, -1) <= 0, float("-inf"))
    order = torch.argsort(flat_s, dim=1, descending=True, stable=True)
    counts = events.reshape(b, -1).gather(1, order)
    before = counts.cumsum(1) - counts
    target = rate * events.reshape(b, -1).sum(1, keepdim=True)
    keep_sorted = (before < target) & (counts > 0)
    keep = torch.zeros_like(keep_sorted).scatter_(1, order, keep_sorted)
    return keep.to(scores.dtype).reshape(scores.shape)
