"""N-MNIST: MNIST digits recorded by an ATIS event camera making three saccades.

Orchard, Jayawant, Cohen & Thakor, "Converting Static Image Datasets to Spiking Neuromorphic
Datasets Using Saccades", Frontiers in Neuroscience 9:437, 2015. 34×34 pixels, 2 polarities,
60,000 train / 10,000 test recordings of about 300 ms (three 100 ms saccades).

Files: the original 40-bit ``.bin`` recordings in ``Train/<digit>/NNNNN.bin`` and
``Test/<digit>/NNNNN.bin`` (optionally under ``NMNIST/``, tonic's layout), either extracted or
inside tar/zip archives, which are read directly (never extracted next to the data). Looked
for under ``<root>/NMNIST``, ``<root>/N-MNIST``, ``<root>/nmnist`` and ``<root>``.

Options: ``frames`` (T, default 10), ``split_by`` (``count``/``time``), ``first_saccade``
(keep only events of the first 100 ms, i.e. the first of the three saccades; default false).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spikeshield import validate
from spikeshield.data.archive import is_archive, iter_members
from spikeshield.data.base import DATA_ENV, DatasetInfo, Location, register_dataset
from spikeshield.data.cache import Arrays
from spikeshield.data.events import (
    Events,
    EventSource,
    check_events,
    compact_frames,
    events_to_frames,
    stack_samples,
)
from spikeshield.errors import DataError

MEMBER = re.compile(r"(?:^|/)(Train|Test)/(\d)/([^/]+\.bin)$")
SENSOR = (34, 34)
SACCADE_US = 100_000
"""Each of the three saccades lasts 100 ms; recordings start at t = 0."""
OVERFLOW_Y = 240
OVERFLOW_US = 1 << 13
MAX_BIN_BYTES = 16 << 20
"""A recording holds a few thousand 5-byte events (the largest of the 1,100 in the shared subset is
36 kB): 16 MiB is far above any real one and far below a memory problem."""


def read_nmnist_bin(data: bytes, where: str) -> Events:
    """Decode one N-MNIST recording.

    Each event is 40 bits, big-endian: byte 0 = x, byte 1 = y, bit 7 of byte 2 = polarity
    (1 = ON), the remaining 23 bits = timestamp in µs. An event with y = 240 is not an event
    but a timestamp-overflow marker that adds 2¹³ µs to every later timestamp (as in the
    dataset's reference reader, ``Read_Ndataset.m``; no marker occurs in N-MNIST itself).
    """
    if len(data) == 0:
        raise DataError(f"{where}: empty file (no events)")
    if len(data) % 5:
        raise DataError(
            f"{where}: {len(data)} bytes is not a whole number of 5-byte events; "
            "the file is truncated or corrupt"
        )
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 5)
    x, y = raw[:, 0], raw[:, 1]
    p = raw[:, 2] >> 7
    t = (
        ((raw[:, 2].astype(np.int64) & 0x7F) << 16)
        | (raw[:, 3].astype(np.int64) << 8)
        | raw[:, 4].astype(np.int64)
    )
    overflow = y == OVERFLOW_Y
    if overflow.any():
        t = t + np.cumsum(overflow) * OVERFLOW_US
        keep = ~overflow
        x, y, t, p = x[keep], y[keep], t[keep], p[keep]
    return Events(x.astype(np.int32), y.astype(np.int32), t, p.astype(np.uint8))


class NMNIST(EventSource):
    info = DatasetInfo(
        name="nmnist",
        input_shape=(2, *SENSOR),
        num_classes=10,
        kind="events",
        description="N-MNIST event recordings (34×34×2), original .bin files, extracted or in an archive",
        class_names=tuple(str(i) for i in range(10)),
    )
    default_frames = 10
    extra_options = {"first_saccade": False}  # noqa: RUF012

    def check_extra_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options["first_saccade"] = validate.boolean("first_saccade", options["first_saccade"])
        return options

    def folders(self, root: Path) -> list[Path]:
        return [root / "NMNIST", root / "N-MNIST", root / "nmnist", root]

    def locate(self, root: Path | None) -> Location:
        if root is None:
            return Location(False, None, [], f"no data root: pass --data-root or set {DATA_ENV}")
        searched = self.folders(root)
        for folder in searched:
            if (folder / "Train").is_dir() and (folder / "Test").is_dir():
                return Location(True, folder, searched, "extracted Train/ and Test/ folders")
            archives = self.archives(folder)
            if archives:
                names = ", ".join(p.name for p in archives)
                return Location(True, folder, searched, f"archive(s) {names}")
        return Location(False, None, searched, "N-MNIST Train/Test folders or archive not found")

    @staticmethod
    def archives(folder: Path) -> list[Path]:
        """Archives in an N-MNIST folder (in any other folder, only those named *nmnist*)."""
        if not folder.is_dir():
            return []
        # folders aside: a FIFO or a broken link named like an archive is an error when read
        found = [p for p in folder.iterdir() if not p.is_dir() and is_archive(p)]
        if folder.name.lower().replace("-", "") != "nmnist":
            found = [p for p in found if "nmnist" in p.name.lower().replace("-", "")]
        return sorted(found)

    def inputs(self, location: Location) -> list[Path]:
        """The folder itself (extracted layout) or the archives in it."""
        folder = location.path
        assert folder is not None
        if (folder / "Train").is_dir() and (folder / "Test").is_dir():
            return [folder]
        return self.archives(folder)

    def sources(self, location: Location, options: dict[str, Any]) -> Sequence[Path]:
        files: list[Path] = []
        for source in self.inputs(location):
            files += sorted(source.rglob("*.bin")) if source.is_dir() else [source]
        return files

    def build(self, location: Location, options: dict[str, Any]) -> Arrays:
        samples: dict[str, dict[tuple[int, str], np.ndarray]] = {"train": {}, "test": {}}
        for source in self.inputs(location):
            for name, data in iter_members(source, MEMBER, MAX_BIN_BYTES):
                match = MEMBER.search(name)
                assert match is not None
                split = "train" if match.group(1) == "Train" else "test"
                key = (int(match.group(2)), match.group(3))
                if key in samples[split]:
                    continue  # the same recording in two archives: keep the first
                where = f"{source}:{name}" if source.is_file() else str(source / name)
                events = read_nmnist_bin(data, where)
                check_events(events, SENSOR, where)
                if options["first_saccade"]:
                    events = events.select(events.t < SACCADE_US)
                frames = events_to_frames(events, options["frames"], SENSOR, options["split_by"])
                samples[split][key] = compact_frames(frames)
        arrays: Arrays = {}
        for split, found in samples.items():
            if not found:
                folder = "Train" if split == "train" else "Test"
                looked = ", ".join(str(s) for s in self.inputs(location))
                raise DataError(f"nmnist: no {split} recordings ({folder}/<digit>/*.bin) in {looked}")
            items = [(key, key[0], frames) for key, frames in found.items()]
            arrays[f"{split}_x"], arrays[f"{split}_y"] = stack_samples(
                items, options["frames"], SENSOR, f"nmnist {split}"
            )
        return arrays


register_dataset(NMNIST())
