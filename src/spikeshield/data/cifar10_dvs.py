"""CIFAR10-DVS: 10,000 CIFAR-10 images shown on a monitor to a moving DVS128 (1,000 per class).

Li, Liu, Ji, Li & Shi, "CIFAR10-DVS: An Event-Stream Dataset for Object Classification",
Frontiers in Neuroscience 11:309, 2017. 128×128×2 events.

Layout: one folder per class (``airplane``, ``automobile``, ..., ``truck``; label = that
order, as in CIFAR-10) holding either the original AEDAT 2.0 recordings
(``cifar10_airplane_0.aedat`` ...) or the AEDAT 4.0 conversion (``*.aedat4``, tonic's
download). Looked for under ``<root>/CIFAR10DVS``, ``<root>/CIFAR10-DVS``,
``<root>/cifar10-dvs``, ``<root>/CIFAR10_DVS`` and ``<root>``.

**Split.** The dataset has no official train/test split, and published accuracies use
different ones, so they are not comparable. spikeshield uses one fixed split, the same on every
machine: within each class the recordings are ordered by the number in their file name, then
permuted with ``numpy.random.default_rng([SPLIT_SEED, class index])``; the first
``round(n / 10)`` of the permutation are test, the rest train (9:1 per class: 9,000 / 1,000 on
the full set). ``meta["split"]`` (copied into every training run's ``metrics.json`` as
``dataset_split``) names the rule, the seed and a digest of the test recordings' names (file
names without their suffix, so the AEDAT4 and AEDAT 2.0 copies give the same digest), so two
results can be checked to use the same split.

Options: ``frames`` (T, default 10), ``split_by`` (``count``/``time``), ``format``
(``auto``: AEDAT4 files if any, else AEDAT 2.0; or ``aedat4`` / ``aedat``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spikeshield.data.aedat import read_aedat2_dvs128, read_aedat4
from spikeshield.data.base import DATA_ENV, DatasetInfo, Location, register_dataset
from spikeshield.data.cache import Arrays
from spikeshield.data.events import EventSource, check_events, compact_frames, events_to_frames, stack_samples
from spikeshield.errors import DataError, UsageError
from spikeshield.io import read_regular

SENSOR = (128, 128)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SPLIT_SEED = 0
TEST_FRACTION = 0.1
FORMATS = ("auto", "aedat4", "aedat")
SUFFIX = {"aedat4": ".aedat4", "aedat": ".aedat"}
FOLDERS = ("CIFAR10DVS", "CIFAR10-DVS", "cifar10-dvs", "CIFAR10_DVS")


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders ``x_2`` before ``x_10``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def split_indices(count: int, class_index: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) positions among ``count`` recordings of one class (see module doc)."""
    order = np.random.default_rng([seed, class_index]).permutation(count)
    k = round(TEST_FRACTION * count)
    return np.sort(order[k:]), np.sort(order[:k])


class CIFAR10DVS(EventSource):
    info = DatasetInfo(
        name="cifar10-dvs",
        input_shape=(2, *SENSOR),
        num_classes=len(CLASSES),
        kind="events",
        description="CIFAR10-DVS (128×128×2): AEDAT4 or original AEDAT 2.0; fixed seeded 9:1 per-class split",
        class_names=CLASSES,
    )
    default_frames = 10
    extra_options = {"format": "auto"}  # noqa: RUF012
    meta_arrays = ("test_digest",)

    def check_extra_options(self, options: dict[str, Any]) -> dict[str, Any]:
        if options["format"] not in FORMATS:
            raise UsageError(f"format must be one of {', '.join(FORMATS)}, got {options['format']!r}")
        return options

    @staticmethod
    def files(folder: Path, layout: str) -> dict[str, list[Path]]:
        """Class name → recordings of that layout, in natural file-name order."""
        suffix = SUFFIX[layout]
        found = {}
        for name in CLASSES:
            sub = folder / name
            # everything but folders: a FIFO or a broken link is an error when read, never skipped
            paths = [p for p in sub.glob(f"*{suffix}") if not p.is_dir()] if sub.is_dir() else []
            found[name] = sorted(paths, key=lambda p: natural_key(p.name))
        return found

    def locate(self, root: Path | None, format: str = "auto") -> Location:
        if root is None:
            return Location(False, None, [], f"no data root: pass --data-root or set {DATA_ENV}")
        searched = [root / f for f in FOLDERS] + [root]
        layouts = ["aedat4", "aedat"] if format == "auto" else [format]
        for folder in searched:
            for layout in layouts:
                found = self.files(folder, layout)
                if any(found.values()):
                    missing = [c for c, paths in found.items() if not paths]
                    if missing:
                        return Location(
                            False,
                            folder,
                            searched,
                            f"no {SUFFIX[layout]} files for class(es) {', '.join(missing)}",
                        )
                    return Location(
                        True, folder, searched, f"{sum(map(len, found.values()))} {layout} files ({layout})"
                    )
        return Location(
            False,
            None,
            searched,
            "class folders (airplane/ ... truck/) with .aedat4 or .aedat files not found",
        )

    def locate_with(self, root: Path | None, options: dict[str, Any]) -> Location:
        return self.locate(root, options["format"])

    @staticmethod
    def layout_of(location: Location) -> str:
        return "aedat4" if location.message.endswith("(aedat4)") else "aedat"

    def sources(self, location: Location, options: dict[str, Any]) -> Sequence[Path]:
        assert location.path is not None
        return [p for paths in self.files(location.path, self.layout_of(location)).values() for p in paths]

    def build(self, location: Location, options: dict[str, Any]) -> Arrays:
        assert location.path is not None
        layout = self.layout_of(location)
        frames, split_by = options["frames"], options["split_by"]
        samples: dict[str, list[tuple[Any, int, np.ndarray]]] = {"train": [], "test": []}
        test_names: list[str] = []
        for label, (name, paths) in enumerate(self.files(location.path, layout).items()):
            _, test_idx = split_indices(len(paths), label)
            test_set = set(test_idx.tolist())
            test_names += [f"{name}/{paths[i].stem}" for i in test_idx]
            for i, path in enumerate(paths):
                data = read_regular(path, "AEDAT file")
                if layout == "aedat4":
                    events = read_aedat4(data, str(path), SENSOR)
                else:
                    events = read_aedat2_dvs128(data, str(path))
                check_events(events, SENSOR, str(path))
                sample = compact_frames(events_to_frames(events, frames, SENSOR, split_by))
                split = "test" if i in test_set else "train"
                samples[split].append(((label, i), label, sample))
        arrays: Arrays = {}
        for split, found in samples.items():
            if not found:
                raise DataError(
                    f"cifar10-dvs: the {split} split is empty (too few recordings in {location.path})"
                )
            arrays[f"{split}_x"], arrays[f"{split}_y"] = stack_samples(
                found, frames, SENSOR, f"cifar10-dvs {split}"
            )
        digest = hashlib.sha1("\n".join(test_names).encode()).hexdigest()[:12]
        arrays["test_digest"] = np.array(digest)
        return arrays

    def split_description(self, arrays: Arrays, options: dict[str, Any]) -> str:
        return (
            f"spikeshield fixed 9:1 per class, seed {SPLIT_SEED} "
            "(numpy default_rng([seed, class]) over files in name order); "
            f"test recordings sha1 {arrays['test_digest']!s}"
        )


register_dataset(CIFAR10DVS())
