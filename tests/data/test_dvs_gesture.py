import numpy as np
import pytest
import torch

from spikeshield.data import load_dataset
from spikeshield.data.aedat import read_aedat31
from spikeshield.data.dvs_gesture import read_labels_csv
from spikeshield.errors import DataError, UsageError

from .formats import AEDAT31_HEADER, aedat31_bytes, labels_csv, tonic_npy_bytes

BASE_T = 80_000_000  # µs, like the real recordings' clock


def _gesture_events(rng, start, end, label, n=300):
    """Events of one gesture: the label sets where on the sensor they fall (x in a band)."""
    x = rng.integers(label * 10, label * 10 + 10, n)
    y = rng.integers(0, 128, n)
    t = np.sort(rng.integers(start, end, n))
    p = rng.integers(0, 2, n)
    return x, y, t, p


def _write_recording(folder, user, lighting, gestures, rng):
    """One userNN_<lighting>.aedat with its labels.csv: gestures = [(class 1-11, start, end)].
    Events between the gestures (not labelled) are written too and must be ignored."""
    parts = [_gesture_events(rng, s, e, c - 1) for c, s, e in gestures]
    gaps = [_gesture_events(rng, e, e + 5000, 0, n=50) for _, _, e in gestures]
    x, y, t, p = (np.concatenate([a[i] for a in parts + gaps]) for i in range(4))
    order = np.argsort(t, kind="stable")
    name = f"user{user:02d}_{lighting}"
    (folder / f"{name}.aedat").write_bytes(
        aedat31_bytes(x[order], y[order], t[order], p[order], per_packet=128)
    )
    (folder / f"{name}_labels.csv").write_text(labels_csv(gestures))


def _gesture_root(tmp_path, users=(1, 2, 24)):
    folder = tmp_path / "DvsGesture"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for user in users:
        gestures = [(c, BASE_T + c * 10**6, BASE_T + c * 10**6 + 500_000) for c in (1, 5, 11)]
        _write_recording(folder, user, "fluorescent", gestures, rng)
    return tmp_path


def test_aedat31_recordings_are_cut_into_labelled_gestures(tmp_path):
    root = _gesture_root(tmp_path)
    train = load_dataset("dvs-gesture", "train", root, frames=4)
    test = load_dataset("dvs-gesture", "test", root, frames=4)
    # users 1-23 train, 24-29 test: two train recordings, one test recording, 3 gestures each
    assert (len(train), len(test)) == (6, 3)
    assert train.labels.tolist() == [0, 4, 10, 0, 4, 10] and test.labels.tolist() == [0, 4, 10]
    assert train.images.shape == (6, 4, 2, 128, 128)
    # each sample holds exactly its gesture's 300 events (not the 50 unlabelled ones after it)
    assert train.images.sum((1, 2, 3, 4), dtype=torch.int64).tolist() == [300] * 6
    # and they fall in the class's band of columns
    cols = train.images[1].sum((0, 1, 2), dtype=torch.int64).nonzero().flatten()
    assert cols.min() >= 40 and cols.max() < 50
    assert train.meta["split"] == "official: users 1-23 train, 24-29 test" and train.info.num_classes == 11


def test_aedat31_timestamp_overflow_and_invalid_events():
    t = np.array([5, 6, 2**31 + 7, 2**31 + 9])
    data = aedat31_bytes([1, 2, 3, 4], [5, 6, 7, 8], t, [1, 0, 1, 0], per_packet=2, invalid_at=1)
    ev = read_aedat31(data, "rec.aedat")
    assert ev.t.tolist() == [5, 2**31 + 7, 2**31 + 9] and ev.x.tolist() == [1, 3, 4]
    assert ev.y.tolist() == [5, 7, 8] and ev.p.tolist() == [1, 1, 0]


def test_tonic_npy_layout(tmp_path):
    rng = np.random.default_rng(1)
    for folder, user in (
        ("ibmGestureTrain", "user01_led"),
        ("ibmGestureTrain", "user02_led"),
        ("ibmGestureTest", "user25_led"),
    ):
        for label in (0, 3):
            x, y, t, p = _gesture_events(rng, 0, 2_000_000, label, n=100)
            path = tmp_path / "DVSGesture" / folder / user / f"{label}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(tonic_npy_bytes(x, y, t, p))
    train = load_dataset("dvs-gesture", "train", tmp_path, frames=2, split_by="time")
    test = load_dataset("dvs-gesture", "test", tmp_path, frames=2, split_by="time")
    assert (len(train), len(test)) == (4, 2) and train.labels.tolist() == [0, 3, 0, 3]
    assert train.images.sum((1, 2, 3, 4), dtype=torch.int64).tolist() == [100] * 4
    assert train.meta["layout"] == "tonic .npy samples (npy)"
    with pytest.raises(DataError, match=r"userNN_\*.aedat files not found"):
        load_dataset("dvs-gesture", "train", tmp_path, format="aedat")


def test_corrupt_truncated_and_missing_files_are_clear(tmp_path):
    root = _gesture_root(tmp_path, users=(3,))
    folder = root / "DvsGesture"
    rec = folder / "user03_fluorescent.aedat"
    data = rec.read_bytes()
    rec.write_bytes(data[:-100])
    with pytest.raises(DataError, match=r"user03_fluorescent.aedat: packet \d+ needs \d+ bytes .* truncated"):
        load_dataset("dvs-gesture", "train", root)
    rec.write_bytes(AEDAT31_HEADER[:30])
    with pytest.raises(DataError, match=r"user03_fluorescent.aedat: .*header"):
        load_dataset("dvs-gesture", "train", root)
    rec.write_bytes(b"#!AER-DAT2.0\r\n#!END-HEADER\r\n")
    with pytest.raises(DataError, match=r"user03_fluorescent.aedat: AEDAT version 2.0, expected 3.x"):
        load_dataset("dvs-gesture", "train", root)
    rec.write_bytes(data)
    (folder / "user03_fluorescent_labels.csv").write_text("class,startTime_usec,endTime_usec\n12,1,2\n")
    with pytest.raises(DataError, match=r"labels.csv: line 2 has class 12"):
        load_dataset("dvs-gesture", "train", root)
    (folder / "user03_fluorescent_labels.csv").write_text("start,end\n1,2\n")
    with pytest.raises(DataError, match=r"labels.csv: expected the header"):
        read_labels_csv(folder / "user03_fluorescent_labels.csv")
    (folder / "user03_fluorescent_labels.csv").unlink()
    with pytest.raises(DataError, match=r"user03_fluorescent_labels.csv: label file not found"):
        load_dataset("dvs-gesture", "train", root)
    with pytest.raises(UsageError, match="format must be one of auto, aedat, npy"):
        load_dataset("dvs-gesture", "train", root, format="hdf5")
    with pytest.raises(DataError, match=r"dvs-gesture: DVS Gesture .* not found \(looked in .*DvsGesture"):
        load_dataset("dvs-gesture", "train", tmp_path / "empty")
