"""The embedded 8×8 digits set (scikit-learn's ``load_digits``): the zero-setup default."""

from __future__ import annotations

import gzip
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikeshield.data.base import (
    ArrayDataset,
    DatasetInfo,
    DatasetSource,
    Location,
    check_options,
    register_dataset,
)
from spikeshield.errors import DataError

TEST_FRACTION = 0.2
SPLIT_SEED = 0


@cache
def _digits_array() -> np.ndarray:
    ref = resources.files("spikeshield.data").joinpath("embedded/digits-8x8.u8.gz")
    try:
        raw = gzip.decompress(ref.read_bytes())
    except (OSError, EOFError) as exc:
        raise DataError(f"embedded digits file {ref} is unreadable ({exc}); reinstall spikeshield") from None
    if len(raw) != 1797 * 65:
        raise DataError(f"embedded digits file {ref} has {len(raw)} bytes, expected {1797 * 65}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(1797, 65)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed per-class split: each class is shuffled with ``seed`` and its first
    round(test_fraction · n_class) samples go to test. Returns sorted (train, test) indices."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = round(test_fraction * len(idx))
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


class Digits(DatasetSource):
    info = DatasetInfo(
        name="digits",
        input_shape=(1, 8, 8),
        num_classes=10,
        description="scikit-learn's 1,797 8×8 digits, embedded; fixed stratified 80/20 split",
        class_names=tuple(str(i) for i in range(10)),
        normalize=((0.30,), (0.38,)),
    )

    def locate(self, root: Path | None) -> Location:
        ref = resources.files("spikeshield.data").joinpath("embedded/digits-8x8.u8.gz")
        return Location(True, Path(str(ref)), [], "embedded in the package")

    def load(self, split: str, root: Path | None, **options: Any) -> ArrayDataset:
        check_options("digits", options, ())
        data = _digits_array()
        train_idx, test_idx = stratified_split(data[:, 64], TEST_FRACTION, SPLIT_SEED)
        rows = data[train_idx if split == "train" else test_idx]
        images = torch.from_numpy(rows[:, :64].reshape(-1, 1, 8, 8).copy())
        labels = torch.from_numpy(rows[:, 64].astype(np.int64))
        meta = {"split": f"stratified {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%}, seed {SPLIT_SEED}"}
        return ArrayDataset(images, labels, scale=16.0, meta=meta)


register_dataset(Digits())
