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
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spikeshield.data.aedat import read_aedat31
from spikeshield.data.base import DATA_ENV, DatasetInfo, Location, register_dataset
from spikeshield.data.cache import Arrays
from spikeshield.data.events import (
    Events,
    EventSource,
    check_sensor,
    compact_frames,
    events_to_frames,
    stack_samples,
)
from spikeshield.errors import DataError, UsageError

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


def read_labels_csv(path: Path) -> list[tuple[int, int, int]]:
    """``(label 0-10, start µs, end µs)`` rows of a ``*_labels.csv`` file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(
            f"{path}: label file not found (every .aedat recording needs its _labels.csv)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read label file ({exc})") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if not rows or [c.strip() for c in rows[0][:3]] != ["class", "startTime_usec", "endTime_usec"]:
        raise DataError(f"{path}: expected the header 'class,startTime_usec,endTime_usec'")
    out = []
    for line, row in enumerate(rows[1:], start=2):
        try:
            label, start, end = (int(c) for c in row[:3])
        except ValueError:
            raise DataError(f"{path}: line {line} is not three integers: {','.join(row)}") from None
        if not 1 <= label <= len(CLASSES) or end <= start:
            raise DataError(f"{path}: line {line} has class {label} (expected 1-11) or end <= start")
        out.append((label - 1, start, end))
    return out


def read_tonic_npy(data: bytes, where: str) -> Events:
    """Events of one tonic ``.npy`` sample: columns x, y, p, t (ms → µs)."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(
            f"{where}: not a readable .npy array ({exc}); the file is truncated or corrupt"
        ) from None
    if array.ndim != 2 or array.shape[1] != 4 or not np.issubdtype(array.dtype, np.number):
        raise DataError(
            f"{where}: expected an [N, 4] numeric array (x, y, p, t), got {array.dtype} {array.shape}"
        )
    t = np.rint(array[:, 3].astype(np.float64) * 1000.0).astype(np.int64)
    return Events(
        array[:, 0].astype(np.int32), array[:, 1].astype(np.int32), t, (array[:, 2] != 0).astype(np.uint8)
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
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
                events = read_aedat31(data, str(path))
                check_sensor(events, SENSOR, str(path))
                for index, (label, start, end) in enumerate(labels):
                    cut = events.select((events.t >= start) & (events.t < end))
                    sample = compact_frames(events_to_frames(cut, frames, SENSOR, split_by))
                    samples[split].append(((path.name, index), label, sample))
        else:
            for split, folder in (("train", "ibmGestureTrain"), ("test", "ibmGestureTest")):
                for path in sorted((location.path / folder).glob("*/*.npy")):
                    if not path.stem.isdigit() or not 0 <= int(path.stem) < len(CLASSES):
                        raise DataError(f"{path}: file name must be the class number 0-10 (<class>.npy)")
                    try:
                        data = path.read_bytes()
                    except OSError as exc:
                        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
                    events = read_tonic_npy(data, str(path))
                    check_sensor(events, SENSOR, str(path))
                    sample = compact_frames(events_to_frames(events, frames, SENSOR, split_by))
                    samples[split].append(((path.parent.name, int(path.stem)), int(path.stem), sample))
        arrays: Arrays = {}
        for split, found in samples.items():
            if not found:
                raise DataError(f"dvs-gesture: no {split} samples found in {location.path}")
            arrays[f"{split}_x"], arrays[f"{split}_y"] = stack_samples(found, frames, SENSOR)
        return arrays

    def split_description(self, arrays: Arrays, options: dict[str, Any]) -> str:
        return "official: users 1-23 train, 24-29 test"


register_dataset(DVSGesture())
