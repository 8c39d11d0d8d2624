import json

import numpy as np
import pytest
import torch

from spikeshield.data import load_dataset
from spikeshield.data.aedat import read_aedat2_dvs128, read_aedat4
from spikeshield.data.cifar10_dvs import CLASSES, split_indices
from spikeshield.errors import DataError, UsageError

from .formats import aedat2_bytes, aedat4_bytes


def _events(rng, label, n=120):
    x = rng.integers(0, 128, n)
    y = rng.integers(label * 12, label * 12 + 12, n)  # the class sets the band of rows
    t = np.sort(rng.integers(0, 1_300_000, n))
    p = rng.integers(0, 2, n)
    return x, y, t, p


def _write_set(root, per_class=10, fmt="aedat4", compression="none"):
    rng = np.random.default_rng(0)
    for label, name in enumerate(CLASSES):
        folder = root / "CIFAR10DVS" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            x, y, t, p = _events(rng, label)
            if fmt == "aedat4":
                data = aedat4_bytes(x, y, t + 1_500_000_000_000_000, p, compression=compression)
                (folder / f"cifar10_{name}_{i}.aedat4").write_bytes(data)
            else:
                (folder / f"cifar10_{name}_{i}.aedat").write_bytes(aedat2_bytes(x, y, t, p, special_at=3))


@pytest.mark.parametrize("compression", ["none", "lz4", "zstd"])
def test_aedat4_round_trip(compression):
    rng = np.random.default_rng(1)
    x, y, t, p = _events(rng, 3, n=257)
    ev = read_aedat4(aedat4_bytes(x, y, t, p, compression=compression), "r.aedat4", (128, 128))
    assert ev.x.tolist() == x.tolist() and ev.y.tolist() == y.tolist()
    assert ev.t.tolist() == t.tolist() and ev.p.tolist() == p.tolist()


def test_aedat2_dvs128_decoding_follows_jaer():
    data = aedat2_bytes([0, 127, 5], [1, 2, 127], [10, 20, 30], [1, 0, 1], special_at=1)
    ev = read_aedat2_dvs128(data, "r.aedat")
    assert ev.x.tolist() == [0, 127, 5] and ev.y.tolist() == [1, 2, 127]
    assert ev.t.tolist() == [10, 20, 30] and ev.p.tolist() == [1, 0, 1]  # the sync event is dropped


@pytest.mark.parametrize("fmt", ["aedat4", "aedat"])
def test_fixed_seeded_split_recorded_in_meta(tmp_path, fmt):
    _write_set(tmp_path, fmt=fmt)
    train = load_dataset("cifar10-dvs", "train", tmp_path, frames=3)
    test = load_dataset("cifar10-dvs", "test", tmp_path, frames=3)
    assert (len(train), len(test)) == (90, 10)  # 9:1 in every class
    assert torch.bincount(test.labels).tolist() == [1] * 10
    assert train.images.shape == (90, 3, 2, 128, 128)
    assert train.images.sum((1, 2, 3, 4), dtype=torch.int64).tolist() == [120] * 90
    rows = train.images[train.labels == 7].sum((0, 1, 2, 4), dtype=torch.int64).nonzero().flatten()
    assert rows.min() >= 84 and rows.max() < 96  # class 7's events landed in its rows
    split = train.meta["split"]
    assert split == test.meta["split"] and "9:1 per class, seed 0" in split and "sha1" in split


def test_split_is_fixed_and_the_same_for_both_formats(tmp_path):
    # frozen: changing these numbers changes every published comparison made with spikeshield
    assert split_indices(1000, 0)[1][:8].tolist() == [2, 8, 12, 25, 36, 46, 53, 69]
    assert split_indices(1000, 0)[1].size == 100 and split_indices(10, 9)[1].tolist() == [4]
    train, test = split_indices(1000, 3)
    assert len(set(train.tolist()) | set(test.tolist())) == 1000 and len(test) == 100
    _write_set(tmp_path, per_class=10, fmt="aedat4")
    _write_set(tmp_path, per_class=10, fmt="aedat")
    a = load_dataset("cifar10-dvs", "test", tmp_path, frames=2, format="aedat4")
    b = load_dataset("cifar10-dvs", "test", tmp_path, frames=2, format="aedat")
    assert a.meta["split"] == b.meta["split"] and torch.equal(a.images, b.images)


def test_split_digest_recorded_by_the_trainer(tmp_path):
    from spikeshield.training import TrainConfig, train

    _write_set(tmp_path, per_class=10)
    config = TrainConfig(
        dataset="cifar10-dvs",
        model="mlp",
        time_steps=2,
        epochs=1,
        batch_size=32,
        data_root=str(tmp_path),
        model_options={"hidden": [16]},
    )
    metrics = train(config, tmp_path / "run", progress=False, log=lambda _: None)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["dataset_split"] == metrics["dataset_split"]
    assert "9:1 per class, seed 0" in saved["dataset_split"] and "sha1" in saved["dataset_split"]


def test_corrupt_and_missing_files_are_clear(tmp_path):
    _write_set(tmp_path, per_class=2)
    path = tmp_path / "CIFAR10DVS" / "bird" / "cifar10_bird_1.aedat4"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        DataError, match=r"cifar10_bird_1.aedat4: packet \d+ needs \d+ bytes but only \d+ remain"
    ):
        load_dataset("cifar10-dvs", "train", tmp_path, frames=2)
    path.write_bytes(b"#!AER-DAT4.0\r\n\x40\x00")
    with pytest.raises(DataError, match=r"cifar10_bird_1.aedat4: unreadable AEDAT4 header"):
        load_dataset("cifar10-dvs", "train", tmp_path, frames=2)
    path.write_bytes(b"#!AER-DAT2.0\r\n" + bytes(16))
    with pytest.raises(DataError, match=r"cifar10_bird_1.aedat4: not an AEDAT 4.0 file"):
        load_dataset("cifar10-dvs", "train", tmp_path, frames=2)
    rng = np.random.default_rng(0)
    path.write_bytes(aedat4_bytes(*_events(rng, 2), width=240, height=180))
    with pytest.raises(
        DataError, match=r"cifar10_bird_1.aedat4: event stream 0 is 240×180, expected 128×128"
    ):
        load_dataset("cifar10-dvs", "train", tmp_path, frames=2)
    path.unlink()
    (tmp_path / "CIFAR10DVS" / "bird" / "cifar10_bird_0.aedat4").unlink()
    with pytest.raises(DataError, match=r"cifar10-dvs: no .aedat4 files for class\(es\) bird"):
        load_dataset("cifar10-dvs", "train", tmp_path, frames=2)
    with pytest.raises(UsageError, match="format must be one of auto, aedat4, aedat"):
        load_dataset("cifar10-dvs", "train", tmp_path, format="h5")


def test_truncated_aedat2_is_clear(tmp_path):
    _write_set(tmp_path, per_class=1, fmt="aedat")
    path = tmp_path / "CIFAR10DVS" / "cat" / "cifar10_cat_0.aedat"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match=r"cifar10_cat_0.aedat: \d+ bytes of events is not a whole number"):
        load_dataset("cifar10-dvs", "train", tmp_path, format="aedat")
