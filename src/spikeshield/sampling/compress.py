"""DVS compression: keep the events the spiking sampler picks, write them as N-MNIST files.

[recon] The seed abstract uses the sampler "for compressing massive data from the dynamic
vision sensor". Here a recording's events are binned into ``T`` time bins of equal duration
(the ``split_by="time"`` frames of :mod:`spikeshield.data.events`); the sampler scores every
(bin, pixel) cell, and the best cells are kept until ``rate`` of the recording's events are
(:func:`~.masks.event_budget_mask`); an event is kept when its cell is. Every recording's first
and last event are always kept, so the compressed recording spans the same time and its
time-binned frames have the original bin edges (2 events of some 4,000 per N-MNIST recording,
counted in the kept events).

The kept events are written in the N-MNIST 40-bit format (:func:`write_nmnist_bin`, the
inverse of :func:`spikeshield.data.nmnist.read_nmnist_bin`) in tonic's layout
``NMNIST/{Train,Test}/<digit>/<name>.bin`` inside a tar archive compressed by a general-purpose
compressor of the standard library, named by the file's suffix (:data:`COMPRESSORS`: ``.tar.gz``
zlib/DEFLATE level 9, ``.tar.bz2`` bzip2 level 9, ``.tar.xz`` LZMA2 preset 6, the default: on
the N-MNIST subset preset 9 is 0.2 % smaller for 7× the memory), which the
``nmnist`` dataset reads as it reads the original. Two baselines: :func:`random_keep` keeps the
same number of events of each recording uniformly at random (ends kept alike), and the
*lossless* one keeps every event and only compresses (the same archive of the full stream:
``lossless_bytes`` in :func:`write_compressed`'s record).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikeshield.data import DATASETS, data_root
from spikeshield.data.archive import iter_members
from spikeshield.data.events import Events, events_to_frames, frame_index
from spikeshield.data.nmnist import MAX_BIN_BYTES, MEMBER, SENSOR, read_nmnist_bin
from spikeshield.errors import DataError, UsageError
from spikeshield.io import atomic_write_bytes
from spikeshield.progress import Progress
from spikeshield.sampling.masks import check_rate, event_budget_mask
from spikeshield.sampling.model import SamplingModel

EVENT_BYTES = 5
MAX_TIME_US = 1 << 23
COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gz": lambda data: gzip.compress(data, compresslevel=9, mtime=0),
    "bz2": lambda data: bz2.compress(data, compresslevel=9),
    "xz": lambda data: lzma.compress(data, preset=6),
}
"""Archive suffix ``.tar.<name>`` → compressor (deterministic: the same bytes every time)."""


@dataclass
class Recording:
    """One N-MNIST recording: its archive member name, split, label and events (time-sorted)."""

    name: str
    split: str
    label: int
    events: Events


def write_nmnist_bin(events: Events) -> bytes:
    """Encode events in the N-MNIST 40-bit format (5 bytes an event, big-endian: x, y, polarity
    bit and a 23-bit µs timestamp), so that :func:`~spikeshield.data.nmnist.read_nmnist_bin`
    reads back exactly these events.

    Raises:
        UsageError: no events, or a coordinate, polarity or timestamp the format cannot hold
        (x, y in 0..255 with y ≠ 240, the overflow marker; t in 0..2²³ − 1 µs).
    """
    if len(events) == 0:
        raise UsageError("an N-MNIST file needs at least one event")
    x, y, t, p = (np.asarray(a, dtype=np.int64) for a in (events.x, events.y, events.t, events.p))
    bad = (x < 0) | (x > 255) | (y < 0) | (y > 255) | (y == 240) | (t < 0) | (t >= MAX_TIME_US)
    bad |= (p != 0) & (p != 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UsageError(
            f"event {i} (x={x[i]}, y={y[i]}, t={t[i]}, p={p[i]}) does not fit the N-MNIST format"
        )
    raw = np.empty((len(t), EVENT_BYTES), dtype=np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = (p << 7) | ((t >> 16) & 0x7F)
    raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    return raw.tobytes()


def read_recordings(root: str | Path | None, splits: Sequence[str] = ("train", "test")) -> list[Recording]:
    """The N-MNIST recordings found under the data ``root`` (as the ``nmnist`` dataset finds them),
    read with :func:`~spikeshield.data.nmnist.read_nmnist_bin`, in name order."""
    source = DATASETS.get("nmnist")
    location = source.locate(data_root(root))
    if not location.ready:
        raise DataError(f"nmnist: {location.message}; pass --data-root")
    found: dict[str, Recording] = {}
    for archive in source.inputs(location):  # type: ignore[attr-defined]
        for name, data in iter_members(archive, MEMBER, MAX_BIN_BYTES):
            match = MEMBER.search(name)
            assert match is not None
            split = "train" if match.group(1) == "Train" else "test"
            member = f"NMNIST/{match.group(1)}/{match.group(2)}/{match.group(3)}"
            if split in splits and member not in found:
                events = read_nmnist_bin(data, f"{archive}:{name}")
                if np.any(np.diff(events.t) < 0):
                    events = events.select(np.argsort(events.t, kind="stable"))
                found[member] = Recording(member, split, int(match.group(2)), events)
    if not found:
        raise DataError(f"nmnist: no recordings of split(s) {', '.join(splits)} under {location.path}")
    return [found[k] for k in sorted(found)]


def pin_ends(keep: np.ndarray) -> np.ndarray:
    """``keep`` with the first and last event kept (the recording's time span)."""
    keep = keep.copy()
    keep[0] = keep[-1] = True
    return keep


@torch.no_grad()
def sampler_keep(
    model: SamplingModel,
    recordings: Sequence[Recording],
    rate: float,
    time_steps: int,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
) -> list[np.ndarray]:
    """Per recording, a bool array over its events: kept by the spiking sampler at ``rate``."""
    check_rate(rate)
    if model.sampler is None:
        raise UsageError("compression needs a run of the spiking sampler (mask = spiking)")
    model.eval()
    keeps: list[np.ndarray] = []
    chunks = [recordings[i : i + batch_size] for i in range(0, len(recordings), batch_size)]
    for chunk in Progress(chunks, total=len(chunks), desc=f"compress {rate:g}", enabled=progress):
        frames = np.stack([events_to_frames(r.events, time_steps, SENSOR, "time") for r in chunk])
        x = torch.from_numpy(frames).float().to(device)
        mask = event_budget_mask(model.sampler.potential(x), x.sum(2, keepdim=True), rate).cpu().numpy()
        for i, r in enumerate(chunk):
            e = r.events
            bins = frame_index(e.t, time_steps, "time")
            keeps.append(pin_ends(mask[i, bins, 0, e.y, e.x] > 0))
    return keeps


def random_keep(keeps: Sequence[np.ndarray], seed: int) -> list[np.ndarray]:
    """Per recording, as many events as ``keeps`` kept, drawn uniformly (ends kept)."""
    out = []
    for i, keep in enumerate(keeps):
        rng = np.random.default_rng([seed, i])
        n = len(keep)
        chosen = pin_ends(np.zeros(n, dtype=bool))
        extra = int(keep.sum()) - int(chosen.sum())
        if extra > 0:
            chosen[1 + rng.choice(n - 2, size=extra, replace=False)] = True
        out.append(chosen)
    return out


def compressor_of(path: str | Path) -> str:
    """The compressor a file name asks for: ``.tar.gz`` (or ``.tgz``), ``.tar.bz2`` or ``.tar.xz``.

    Raises:
        UsageError: any other name.
    """
    name = Path(path).name.lower()
    if name.endswith(".tgz"):
        return "gz"
    for key in COMPRESSORS:
        if name.endswith(f".tar.{key}"):
            return key
    raise UsageError(f"{path}: name the compressed file *.tar.gz, *.tar.bz2 or *.tar.xz (its compressor)")


def archive_bytes(members: Sequence[tuple[str, bytes]], compressor: str = "gz") -> bytes:
    """A reproducible compressed tar of ``(name, content)`` members (fixed times and owners),
    compressed by ``compressor`` (a key of :data:`COMPRESSORS`)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return COMPRESSORS[compressor](buffer.getvalue())


def encode(
    recordings: Sequence[Recording], keeps: Sequence[np.ndarray] | None = None
) -> list[tuple[str, bytes]]:
    """The archive members: each recording's (kept) events as an N-MNIST file."""
    return [
        (r.name, write_nmnist_bin(r.events if keeps is None else r.events.select(keep)))
        for r, keep in zip(recordings, keeps or [None] * len(recordings))
    ]


def write_compressed(
    path: str | Path,
    recordings: Sequence[Recording],
    keeps: Sequence[np.ndarray],
    lossless_bytes: int | None = None,
) -> dict[str, Any]:
    """Write the kept events as an N-MNIST archive at ``path`` (atomically; the compressor is
    named by its suffix, :func:`compressor_of`). Returns events and sizes; every ratio is
    bytes before over bytes after:

    - ``bin_bytes_before`` / ``bin_bytes_after``, ``bin_ratio``: the raw N-MNIST files (5 bytes
      an event) of all events and of the kept ones;
    - ``lossless_bytes``, ``lossless_ratio``: the same archive of *all* events (the lossless
      baseline: compression only), against the raw files (computed here if not given);
    - ``archive_bytes``, ``archive_ratio``: the file written, against the raw files of all
      events; ``over_lossless``: the lossless archive's size over this one's.
    """
    compressor = compressor_of(path)
    before = sum(len(r.events) for r in recordings)
    after = sum(int(k.sum()) for k in keeps)
    members = encode(recordings, keeps)
    data = archive_bytes(members, compressor)
    atomic_write_bytes(path, data)
    lossless = lossless_bytes or len(archive_bytes(encode(recordings), compressor))
    raw_before, raw_after = EVENT_BYTES * before, sum(len(m[1]) for m in members)
    return {
        "path": str(path),
        "compressor": compressor,
        "recordings": len(recordings),
        "events_before": before,
        "events_after": after,
        "events_kept": after / before,
        "bin_bytes_before": raw_before,
        "bin_bytes_after": raw_after,
        "bin_ratio": raw_before / raw_after,
        "lossless_bytes": lossless,
        "lossless_ratio": raw_before / lossless,
        "archive_bytes": len(data),
        "archive_ratio": raw_before / len(data),
        "over_lossless": lossless / len(data),
    }


def read_back(path: str | Path) -> Iterator[tuple[str, Events]]:
    """``(member name, events)`` of every recording in a compressed archive, read by our reader."""
    for name, data in iter_members(Path(path), MEMBER, MAX_BIN_BYTES):
        yield name, read_nmnist_bin(data, f"{path}:{name}")
