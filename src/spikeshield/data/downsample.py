"""Spatial down-sampling of event frames, e.g. 128×128 DVS frames to 64, 48 or 32 pixels.

Full-resolution DVS128 Gesture or CIFAR10-DVS frames make every conv layer 16× costlier than
at 32×32; many papers train on smaller frames. Two options, taken by every event dataset and
applied by :func:`~spikeshield.data.load_dataset` after the frames are built (so they are part
of a run's ``dataset_options`` and recorded in its ``config.json``):

- ``frame_size``: the target size, one number (square) or ``[H, W]``, at most the sensor's.
  Source pixel ``(y, x)`` of an ``H×W`` frame goes to target pixel ``(⌊y·H'/H⌋, ⌊x·W'/W⌋)`` —
  the same as scaling each event's coordinates and flooring them (tonic's ``Downsample``), so
  with a size that does not divide the sensor (128 → 48) target pixels gather 2 or 3 source
  rows and columns.
- ``frame_pool``: ``sum`` (default) — a target cell holds the sum of the counts mapped to it:
  every event is kept, the total count of each frame and polarity is preserved exactly;
  ``max`` — the largest of those counts (a max pool of counts; events are lost).

Counts stay integers: ``uint8`` if every cell fits, else ``int16``, else ``int32``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from spikeshield import validate
from spikeshield.errors import UsageError

if TYPE_CHECKING:
    from spikeshield.data.base import ArrayDataset, DatasetInfo

FRAME_OPTIONS = ("frame_size", "frame_pool")
POOLS = ("sum", "max")
CHUNK = 64
"""Samples down-sampled at a time (bounds the int32 working copy)."""


def target_size(value: Any, sensor: tuple[int, int], dataset: str) -> tuple[int, int]:
    """``frame_size`` as ``(H', W')``, checked against the ``(H, W)`` sensor.

    Raises:
        UsageError: not one or two positive integers, or larger than the sensor.
    """
    values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    if len(values) not in (1, 2):
        raise UsageError(f"frame_size must be one number or [height, width], got {value!r}")
    size = [validate.positive_int("frame_size", v) for v in values]
    height, width = (size[0], size[0]) if len(size) == 1 else (size[0], size[1])
    if height > sensor[0] or width > sensor[1]:
        raise UsageError(
            f"frame_size {height}×{width} is larger than {dataset}'s {sensor[0]}×{sensor[1]} sensor: "
            "frames are only down-sampled"
        )
    return height, width


def split_options(info: DatasetInfo, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(the reader's options, the down-sampling options)``; the latter empty when not asked for.

    Raises:
        UsageError: down-sampling asked of a static dataset, or a bad size or pool.
    """
    reader = {k: v for k, v in options.items() if k not in FRAME_OPTIONS}
    asked = {k: options[k] for k in FRAME_OPTIONS if k in options and options[k] is not None}
    if not asked:
        return reader, {}
    if info.kind != "events":
        raise UsageError(f"{', '.join(asked)}: {info.name} holds images, not event frames")
    sensor = (info.input_shape[1], info.input_shape[2])
    size = target_size(asked.get("frame_size", list(sensor)), sensor, info.name)
    pool = asked.get("frame_pool", "sum")
    if pool not in POOLS:
        raise UsageError(f"frame_pool must be one of {', '.join(POOLS)}, got {pool!r}")
    return reader, {"size": size, "pool": pool}


def frame_shape(info: DatasetInfo, options: dict[str, Any]) -> tuple[int, ...]:
    """A dataset's per-frame input shape ``(C, H, W)`` under these dataset options."""
    _, frames = split_options(info, options)
    return (info.input_shape[0], *frames["size"]) if frames else tuple(info.input_shape)


def _index(source: int, target: int, device: torch.device) -> Tensor:
    return torch.arange(source, device=device) * target // source


def downsample_frames(frames: Tensor, size: tuple[int, int], pool: str = "sum") -> Tensor:
    """Event counts ``[..., H, W]`` → ``[..., H', W']`` as ``int32`` (see the module doc).

    Raises:
        UsageError: a floating-point input, an unknown pool, or a size above ``(H, W)``.
    """
    if frames.is_floating_point():
        raise UsageError("downsample_frames takes integer event counts, got floating-point frames")
    if pool not in POOLS:
        raise UsageError(f"frame_pool must be one of {', '.join(POOLS)}, got {pool!r}")
    height, width = frames.shape[-2], frames.shape[-1]
    if size[0] > height or size[1] > width:
        raise UsageError(f"cannot down-sample {height}×{width} frames to {size[0]}×{size[1]}")
    x = frames.to(torch.int32)
    for dim, (source, target) in ((-2, (height, size[0])), (-1, (width, size[1]))):
        index = _index(source, target, x.device)
        shape = list(x.shape)
        shape[dim] = target
        out = torch.zeros(shape, dtype=torch.int32, device=x.device)
        if pool == "sum":
            x = out.index_add_(dim, index, x)
        else:
            view = [1] * x.dim()
            view[dim] = source
            x = out.scatter_reduce_(dim, index.view(view).expand_as(x), x, "amax")
    return x


def compact(counts: Tensor) -> Tensor:
    """Non-negative counts in the smallest of ``uint8`` / ``int16`` / ``int32`` that holds them."""
    peak = int(counts.max()) if counts.numel() else 0
    for dtype in (torch.uint8, torch.int16):
        if peak <= torch.iinfo(dtype).max:
            return counts.to(dtype)
    return counts


def downsample_dataset(dataset: ArrayDataset, size: tuple[int, int], pool: str) -> ArrayDataset:
    """The dataset with its ``[N, T, C, H, W]`` frames down-sampled (in chunks of samples); the
    size and pool are added to its ``meta`` and its ``info.input_shape`` follows."""
    from spikeshield.data.base import ArrayDataset

    chunks = [
        downsample_frames(dataset.images[i : i + CHUNK], size, pool) for i in range(0, len(dataset), CHUNK)
    ]
    images = compact(torch.cat(chunks)) if chunks else dataset.images[..., : size[0], : size[1]]
    info = dataset.info
    if info is not None:
        info = replace(info, input_shape=(info.input_shape[0], *size))
    meta = {**dataset.meta, "frame_size": list(size), "frame_pool": pool}
    return ArrayDataset(images, dataset.labels, scale=dataset.scale, info=info, meta=meta)
