"""DVS128 Gesture: 11 hand and arm gestures by 29 subjects under 3 lighting conditions.

Amir et al., "A Low Power, Fully Event-Based Gesture Recognition System", CVPR 2017.
128×128×2 DVS128 events. Official split by subject: users 1–23 train (1,077 samples after
cutting), users 24–29 test (264).

Two layouts are read (looked for under ``<root>/DvsGesture``, ``<root>/DVSGesture``,
``<root>/DVS128Gesture``, ``<root>/dvs-gesture`` and ``<root>``):

- IBM's original release: ``userNN_<lighting>.aedat`` (AEDAT 3.1) with
  ``userNN_<lighting>_labels.csv`` (``class,startTime_usec,endTime_usec``, class 1–11). Each
  recording is cut into its labelled gestures: the events with start ≤ t < end.
- tonic's preprocessed layout: ``ibmGestureTrain/userNN_<lighting>/<class>.npy`` and
  ``ibmGestureTest/...``, each an ``[N, 4]`` array of x, y, polarity, t in **milliseconds**
  (class 0–10, already cut). The folders give the split.

Options: ``frames`` (T, default 16), ``split_by`` (``count``/``time``), ``format``
(``auto``: the AEDAT files if present, else the .npy layout; or ``aedat`` / ``npy``).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spikeshield.data.aedat import read_aedat31
from spikeshield.data.base import DATA_ENV, DatasetInfo, Location, register_dataset
from spikeshield.data.cache import Arrays
from spikeshield.data.events import (
    MAX_TIME_US,
    Events,
    EventSource,
    check_events,
    compact_frames,
    events_to_frames,
    stack_samples,
)
from spikeshield.errors import DataError, UsageError
from spikeshield.io import read_regular

SENSOR = (128, 128)
CLASSES = (
    "hand_clapping",
    "right_hand_wave",
    "left_hand_wave",
    "right_arm_clockwise",
    "right_arm_counter_clockwise",
    "left_arm_clockwise",
    "left_arm_counter_clockwise",
    "arm_roll",
    "air_drums",
    "air_guitar",
    "other_gestures",
)
TRAIN_USERS = range(1, 24)
TEST_USERS = range(24, 30)
RECORDING = re.compile(r"^user(\d+)_(.+)\.aedat$")
FORMATS = ("auto", "aedat", "npy")
FOLDERS = ("DvsGesture", "DVSGesture", "DVS128Gesture", "dvs-gesture")
MAX_LABELS_BYTES = 1 << 20
"""A ``_labels.csv`` has a dozen lines."""


def read_labels_csv(path: Path) -> list[tuple[int, int, int]]:
    """``(label 0-10, start µs, end µs)`` rows of a ``*_labels.csv`` file."""
    if not path.exists() and not path.is_symlink():
        raise DataError(f"{path}: label file not found (every .aedat recording needs its _labels.csv)")
    try:
        text = read_regular(path, "label file", max_bytes=MAX_LABELS_BYTES).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: cannot read label file ({exc})") from None
    try:
        rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    if not rows or [c.strip() for c in rows[0][:3]] != ["class", "startTime_usec", "endTime_usec"]:
        raise DataError(f"{path}: expected the header 'class,startTime_usec,endTime_usec'")
    out = []
    for line, row in enumerate(rows[1:], start=2):
        try:
            label, start, end = (int(c) for c in row[:3])
        except ValueError:
            raise DataError(f"{path}: line {line} is not three integers: {','.join(row)}") from None
        if not 1 <= label <= len(CLASSES) or not 0 <= start < end < MAX_TIME_US:
            raise DataError(
                f"{path}: line {line} has class {label} (expected 1-11) or times {start}, {end} "
                "(expected 0 <= start < end)"
            )
        out.append((label - 1, start, end))
    return out


def _npy_array(data: bytes, where: str) -> np.ndarray:
    """The array of a ``.npy`` file, its header checked against the file's size before any
    allocation (``numpy.load`` allocates the declared shape first)."""
    buffer = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buffer)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(buffer)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(buffer)
        else:
            raise ValueError(f".npy version {version[0]}.{version[1]} (1.0 and 2.0 are read)")
    except Exception as exc:  # numpy's header parser (tokenize, literal_eval) fails in many ways
        raise DataError(
            f"{where}: not a readable .npy array ({exc}); the file is truncated or corrupt"
        ) from None
    count = math.prod(shape)
    if dtype.hasobject or dtype.kind not in "biuf" or count * dtype.itemsize != len(data) - buffer.tell():
        raise DataError(
            f"{where}: .npy header declares {dtype} {shape} ({count * dtype.itemsize} bytes), the file "
            f"holds {len(data) - buffer.tell()} bytes of numbers; the file is truncated or corrupt"
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=buffer.tell())
    return array.reshape(shape, order="F" if fortran else "C")


def read_tonic_npy(data: bytes, where: str) -> Events:
    """Events of one tonic ``.npy`` sample: columns x, y, p, t (ms → µs).

    Raises:
        DataError: not an ``[N, 4]`` numeric ``.npy`` array, or a timestamp that is not a
            finite, non-negative number of milliseconds below 2⁴⁰ µs.
    """
    array = _npy_array(data, where)
    if array.ndim != 2 or array.shape[1] != 4:
        raise DataError(
            f"{where}: expected an [N, 4] numeric array (x, y, p, t), got {array.dtype} {array.shape}"
        )
    t_us = array[:, 3].astype(np.float64) * 1000.0
    bad = ~np.isfinite(t_us) | (t_us < 0) | (t_us >= MAX_TIME_US)
    if bad.any():
        raise DataError(
            f"{where}: {int(bad.sum())} timestamps are not finite milliseconds in [0, 2^62 µs) "
            f"(first: {array[np.argmax(bad), 3]}); the file is corrupt"
        )
    xy = array[:, :2]
    if len(array) and (xy.min() < -(2**31) or xy.max() >= 2**31 or not np.isfinite(xy).all()):
        raise DataError(f"{where}: x or y holds values no sensor has; the file is corrupt")
    return Events(
        array[:, 0].astype(np.int32),
        array[:, 1].astype(np.int32),
        np.rint(t_us).astype(np.int64),
        (array[:, 2] != 0).astype(np.uint8),
    )


class DVSGesture(EventSource):
    info = DatasetInfo(
        name="dvs-gesture",
        input_shape=(2, *SENSOR),
        num_classes=len(CLASSES),
        kind="events",
        description="IBM DVS128 Gesture (128×128×2, 11 classes): AEDAT 3.1 + labels.csv, or tonic's .npy",
        class_names=CLASSES,
    )
    default_frames = 16
    extra_options = {"format": "auto"}  # noqa: RUF012

    def check_extra_options(self, options: dict[str, Any]) -> dict[str, Any]:
        if options["format"] not in FORMATS:
            raise UsageError(f"format must be one of {', '.join(FORMATS)}, got {options['format']!r}")
        return options

    @staticmethod
    def layouts(folder: Path) -> list[str]:
        found = []
        if folder.is_dir() and any(RECORDING.match(p.name) for p in folder.glob("user*.aedat")):
            found.append("aedat")
        if (folder / "ibmGestureTrain").is_dir() and (folder / "ibmGestureTest").is_dir():
            found.append("npy")
        return found

    def locate(self, root: Path | None, format: str = "auto") -> Location:
        if root is None:
            return Location(False, None, [], f"no data root: pass --data-root or set {DATA_ENV}")
        searched = [root / f for f in FOLDERS] + [root]
        for folder in searched:
            for layout in self.layouts(folder):
                if format in ("auto", layout):
                    what = "AEDAT 3.1 recordings" if layout == "aedat" else "tonic .npy samples"
                    return Location(True, folder, searched, f"{what} ({layout})")
        wanted = {
            "auto": "userNN_*.aedat files or ibmGestureTrain/ + ibmGestureTest/",
            "aedat": "userNN_*.aedat files",
        }
        return Location(
            False, None, searched, f"DVS Gesture {wanted.get(format, 'ibmGesture*/ folders')} not found"
        )

    @staticmethod
    def layout_of(location: Location) -> str:
        return "aedat" if location.message.endswith("(aedat)") else "npy"

    def locate_with(self, root: Path | None, options: dict[str, Any]) -> Location:
        return self.locate(root, options["format"])

    def recordings(self, folder: Path) -> list[tuple[Path, int]]:
        """``(aedat path, user)`` of the official recordings in a folder."""
        found = []
        for path in sorted(folder.glob("user*.aedat")):
            match = RECORDING.match(path.name)
            if match:
                found.append((path, int(match.group(1))))
        return found

    def sources(self, location: Location, options: dict[str, Any]) -> Sequence[Path]:
        assert location.path is not None
        if self.layout_of(location) == "aedat":
            files: list[Path] = []
            for path, _ in self.recordings(location.path):
                files += [path, path.with_name(path.stem + "_labels.csv")]
            return [f for f in files if f.exists()]
        return sorted(location.path.glob("ibmGesture*/*/*.npy"))

    def build(self, location: Location, options: dict[str, Any]) -> Arrays:
        assert location.path is not None
        samples: dict[str, list[tuple[Any, int, np.ndarray]]] = {"train": [], "test": []}
        frames, split_by = options["frames"], options["split_by"]
        if self.layout_of(location) == "aedat":
            for path, user in self.recordings(location.path):
                if user in TRAIN_USERS:
                    split = "train"
                elif user in TEST_USERS:
                    split = "test"
                else:
                    raise DataError(f"{path}: user {user} is not one of the 29 DVS Gesture subjects")
                labels = read_labels_csv(path.with_name(path.stem + "_labels.csv"))
                events = read_aedat31(read_regular(path, "AEDAT file"), str(path))
                check_events(events, SENSOR, str(path))
                for index, (label, start, end) in enumerate(labels):
                    cut = events.select((events.t >= start) & (events.t < end))
                    sample = compact_frames(events_to_frames(cut, frames, SENSOR, split_by))
                    samples[split].append(((path.name, index), label, sample))
        else:
            for split, folder in (("train", "ibmGestureTrain"), ("test", "ibmGestureTest")):
                for path in sorted((location.path / folder).glob("*/*.npy")):
                    if not path.stem.isdigit() or not 0 <= int(path.stem) < len(CLASSES):
                        raise DataError(f"{path}: file name must be the class number 0-10 (<class>.npy)")
                    events = read_tonic_npy(read_regular(path, ".npy file"), str(path))
                    check_events(events, SENSOR, str(path))
                    sample = compact_frames(events_to_frames(events, frames, SENSOR, split_by))
                    samples[split].append(((path.parent.name, int(path.stem)), int(path.stem), sample))
        arrays: Arrays = {}
        for split, found in samples.items():
            if not found:
                raise DataError(f"dvs-gesture: no {split} samples found in {location.path}")
            arrays[f"{split}_x"], arrays[f"{split}_y"] = stack_samples(
                found, frames, SENSOR, f"dvs-gesture {split}"
            )
        return arrays

    def split_description(self, arrays: Arrays, options: dict[str, Any]) -> str:
        return "official: users 1-23 train, 24-29 test"


register_dataset(DVSGesture())
