"""Event-camera data: event arrays, events → frames, and the base of every event dataset.

An event camera (DVS) reports, per pixel, each time the log intensity changes by more than a
threshold: an event ``(x, y, t, p)`` with a microsecond timestamp ``t`` and a polarity ``p``
(1 = ON, brighter; 0 = OFF, darker). Spiking networks trained with BPTT take such a recording
as ``T`` frames (e.g. Fang et al., "Incorporating Learnable Membrane Time Constant to Enhance
Learning of Spiking Neural Networks", ICCV 2021, the SpikingJelly convention): the events are
split into ``T`` consecutive slices and each slice is integrated into a 2-channel image of
event counts, channel 0 = OFF, channel 1 = ON. A sample is then ``[T, 2, H, W]`` and the model
input ``[B, T, 2, H, W]`` (``encoder="events"``).

Two ways of slicing (``split_by``), the two SpikingJelly offers as ``number`` and ``time``
(there the last frame takes the remainder; here it is spread over the frames):

- ``count`` (default): every frame holds the same number of events (``n // T`` or one more),
  frame of event ``i`` = ``floor(i · T / n)``. Robust to recordings of different length.
- ``time``: every frame covers the same duration: frame = ``floor((t - t₀) · T / (t_end - t₀ + 1))``.

Frames hold raw counts (the model sees counts as floats, ``scale = 1``). They are stored as
``uint8`` when every count of the dataset fits (N-MNIST), else ``int16`` (long DVS recordings:
a busy pixel can fire hundreds of times in one slice): lossless, and 4× / 2× smaller than
float32, which matters for 128×128 sensors (DVS128 Gesture at T = 16 is 0.5 GB as uint8).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikeshield import validate
from spikeshield.data.base import ArrayDataset, DatasetSource, Location, check_options
from spikeshield.data.cache import Arrays, cached_arrays
from spikeshield.errors import DataError, DataWarning, UsageError

SPLIT_BY = ("count", "time")
COUNT_LIMIT = np.iinfo(np.int16).max
MAX_TIME_US = 1 << 62
"""No timestamp reaches 2⁶² µs (146,000 years); below it, differences never overflow int64."""
MAX_SPAN_US = 1 << 40
"""No recording lasts 2⁴⁰ µs (12.7 days): one that seems to is corrupt."""


@dataclass(frozen=True)
class Events:
    """One recording: parallel arrays of pixel column ``x``, row ``y``, time ``t`` (µs, int64)
    and polarity ``p`` (1 = ON, 0 = OFF). ``len(events)`` is the number of events."""

    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    p: np.ndarray

    def __len__(self) -> int:
        return len(self.t)

    def select(self, mask: np.ndarray | slice) -> Events:
        return Events(self.x[mask], self.y[mask], self.t[mask], self.p[mask])


def make_events(x: Any, y: Any, t: Any, p: Any) -> Events:
    """Events with canonical dtypes (int32 x/y, int64 t, uint8 p ∈ {0, 1})."""
    return Events(
        np.asarray(x, dtype=np.int32),
        np.asarray(y, dtype=np.int32),
        np.asarray(t, dtype=np.int64),
        (np.asarray(p) != 0).astype(np.uint8),
    )


def check_sensor(events: Events, sensor: tuple[int, int], where: str) -> None:
    """Raise a :class:`DataError` naming ``where`` if an event lies outside the ``(H, W)`` sensor."""
    height, width = sensor
    if len(events) == 0:
        return
    if events.x.min() < 0 or events.x.max() >= width or events.y.min() < 0 or events.y.max() >= height:
        bad = np.flatnonzero((events.x < 0) | (events.x >= width) | (events.y < 0) | (events.y >= height))[0]
        raise DataError(
            f"{where}: event {bad} at x={events.x[bad]}, y={events.y[bad]} lies outside the "
            f"{width}×{height} sensor; the file is corrupt or not from this dataset"
        )


def check_events(events: Events, sensor: tuple[int, int], where: str) -> None:
    """Check a decoded recording before it becomes frames.

    Errors (:class:`DataError`, the formats forbid them): an event outside the ``(H, W)``
    sensor, a negative timestamp or one of 2⁶² µs or more, a recording spanning
    :data:`MAX_SPAN_US` or more. Warning (:class:`DataWarning`, allowed but suspicious): events
    out of time order, with their count (they are sorted by time when framed).
    """
    check_sensor(events, sensor, where)
    if len(events) == 0:
        return
    t = events.t
    low, high = int(t.min()), int(t.max())
    if low < 0 or high >= MAX_TIME_US:
        raise DataError(
            f"{where}: timestamp {low if low < 0 else high} µs is impossible; the file is corrupt"
        )
    if high - low >= MAX_SPAN_US:
        raise DataError(f"{where}: timestamps span {high - low} µs (more than 12 days); the file is corrupt")
    backwards = int(np.count_nonzero(np.diff(t) < 0))
    if backwards:
        warnings.warn(
            DataWarning(f"{where}: {backwards} of {len(t)} events go back in time; sorted by time"),
            stacklevel=2,
        )


def frame_index(t: np.ndarray, frames: int, split_by: str) -> np.ndarray:
    """The frame (0..frames-1) of each event of a time-sorted recording (see module doc).

    Raises:
        DataError: ``split_by="time"`` and the recording's span times ``frames`` does not fit
            in int64 (see :func:`check_events` for the bound on spans).
    """
    n = len(t)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if split_by == "count":
        return np.arange(n, dtype=np.int64) * frames // n
    t0 = int(t[0])
    span = int(t[-1]) - t0 + 1  # Python ints: exact
    if t0 < 0 or span * frames >= 2**63:
        raise DataError(
            f"events from {t0} to {int(t[-1])} µs cannot be split into {frames} frames by time "
            "(the arithmetic would overflow); the recording is corrupt"
        )
    return (t.astype(np.int64) - t0) * frames // span


def events_to_frames(
    events: Events, frames: int, sensor: tuple[int, int], split_by: str = "count"
) -> np.ndarray:
    """Integrate a recording into ``[frames, 2, H, W]`` int32 event counts.

    Channel 0 counts OFF events, channel 1 ON events; see the module docstring for
    ``split_by``. Events are sorted by time first (stable) if they are not already.
    """
    if split_by not in SPLIT_BY:
        raise UsageError(f"split_by must be one of {', '.join(SPLIT_BY)}, got {split_by!r}")
    height, width = sensor
    if len(events) and np.any(np.diff(events.t) < 0):
        events = events.select(np.argsort(events.t, kind="stable"))
    f = frame_index(events.t, frames, split_by)
    linear = ((f * 2 + events.p) * height + events.y) * width + events.x
    counts = np.bincount(linear, minlength=frames * 2 * height * width)
    return counts.reshape(frames, 2, height, width).astype(np.int32, copy=False)


def compact_frames(frames: np.ndarray) -> np.ndarray:
    """Counts as uint8 when they all fit, else int16 (clipped at 32767, never reached in practice)."""
    peak = int(frames.max()) if frames.size else 0
    if peak <= 255:
        return frames.astype(np.uint8)
    return np.minimum(frames, COUNT_LIMIT).astype(np.int16)


def stack_samples(
    samples: list[tuple[Any, int, np.ndarray]], frames: int, sensor: tuple[int, int], where: str = "events"
) -> tuple[np.ndarray, np.ndarray]:
    """Stack ``(sort key, label, compact frames)`` samples, sorted by key, into
    ``[N, T, 2, H, W]`` (uint8 if every sample is uint8, else int16) and int64 labels.

    Samples without a single event are kept (the formats allow them) with one
    :class:`DataWarning` naming ``where`` and how many there are."""
    samples = sorted(samples, key=lambda s: s[0])
    dtype = np.uint8 if all(s[2].dtype == np.uint8 for s in samples) else np.int16
    images = np.zeros((len(samples), frames, 2, *sensor), dtype=dtype)
    for i, (_, _, sample) in enumerate(samples):
        images[i] = sample
    labels = np.array([s[1] for s in samples], dtype=np.int64)
    empty = int(np.count_nonzero(~images.reshape(len(samples), -1).any(axis=1))) if len(samples) else 0
    if empty:
        warnings.warn(DataWarning(f"{where}: {empty} of {len(samples)} samples hold no events"), stacklevel=2)
    return images, labels


class EventSource(DatasetSource):
    """Base of the event-camera datasets: options, frame building and caching.

    Subclasses set ``info`` (``kind="events"``, ``input_shape=(2, H, W)``), ``default_frames``,
    ``extra_options`` (name → default) and implement :meth:`locate`, :meth:`sources`
    (input files, for the cache fingerprint) and :meth:`build` (both splits' frames).
    Options every event dataset takes:

    - ``frames``: T, the number of frames per sample (the trainer sets it to ``time_steps``);
    - ``split_by``: ``count`` (equal events per frame) or ``time`` (equal durations).
    """

    default_frames: int = 10
    extra_options: dict[str, Any] = {}  # noqa: RUF012 - read-only class constant
    decoder_version: int = 1
    meta_arrays: tuple[str, ...] = ()
    """Extra arrays :meth:`build` returns (besides the frames and labels) for :meth:`split_description`."""
    """Bump when decoding changes, so caches made by older code are rebuilt."""

    @property
    def sensor(self) -> tuple[int, int]:
        return (self.info.input_shape[1], self.info.input_shape[2])

    def parse_options(self, options: dict[str, Any]) -> dict[str, Any]:
        accepted = ("frames", "split_by", *self.extra_options)
        check_options(self.info.name, options, accepted)
        parsed = {
            "frames": validate.positive_int("frames", options.get("frames", self.default_frames)),
            "split_by": options.get("split_by", "count"),
        }
        if parsed["split_by"] not in SPLIT_BY:
            raise UsageError(f"split_by must be one of {', '.join(SPLIT_BY)}, got {parsed['split_by']!r}")
        for key, default in self.extra_options.items():
            parsed[key] = options.get(key, default)
        return self.check_extra_options(parsed)

    def check_extra_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return options

    def locate_with(self, root: Path | None, options: dict[str, Any]) -> Location:
        """Where the files are, for these options (e.g. a ``format`` option picks the layout)."""
        return self.locate(root)

    def sources(self, location: Location, options: dict[str, Any]) -> Sequence[Path]:  # pragma: no cover
        raise NotImplementedError

    def build(self, location: Location, options: dict[str, Any]) -> Arrays:  # pragma: no cover
        """Frames and labels of both splits: ``train_x, train_y, test_x, test_y`` (+ extras)."""
        raise NotImplementedError

    def split_description(self, arrays: Arrays, options: dict[str, Any]) -> str:
        return "official"

    def load(self, split: str, root: Path | None, **options: Any) -> ArrayDataset:
        parsed = self.parse_options(options)
        location = self.locate_with(root, parsed)
        if not location.ready:
            looked = ", ".join(str(p) for p in location.searched) or "nowhere (no data root)"
            raise DataError(
                f"{self.info.name}: {location.message} (looked in {looked}). Pass --data-root or set "
                "SPIKESHIELD_DATA to the folder that holds it."
            )
        start = time.perf_counter()
        arrays, cache_info = cached_arrays(
            self.info.name,
            self.decoder_version,
            parsed,
            self.sources(location, parsed),
            lambda: self.build(location, parsed),
            required=("train_x", "train_y", "test_x", "test_y", *self.meta_arrays),
            keys=(f"{split}_x", f"{split}_y", *self.meta_arrays),
        )
        images = torch.from_numpy(arrays[f"{split}_x"])
        labels = torch.from_numpy(arrays[f"{split}_y"].astype(np.int64))
        meta = {
            "split": self.split_description(arrays, parsed),
            "source": str(location.path),
            "layout": location.message,
            "frames": parsed["frames"],
            "event_values": "counts",  # what a frame cell holds (read by the event corruptions)
            "options": parsed,
            "load_seconds": time.perf_counter() - start,
            **cache_info,
        }
        return ArrayDataset(images, labels, scale=1.0, meta=meta)
