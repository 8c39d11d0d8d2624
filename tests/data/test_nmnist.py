import io
import tarfile
import zipfile

import numpy as np
import pytest
import torch

from spikeshield.data import load_dataset
from spikeshield.data.nmnist import read_nmnist_bin
from spikeshield.errors import DataError, UsageError

from .formats import nmnist_bytes

README_TRAIN_COUNTS = [97, 116, 99, 93, 105, 92, 94, 117, 87, 100]
README_TEST_COUNTS = [8, 14, 8, 11, 14, 7, 10, 15, 2, 11]


def test_real_subset_counts_labels_and_frames(real_nmnist):
    train, test = real_nmnist["train"], real_nmnist["test"]
    assert (len(train), len(test)) == (1000, 100)
    assert torch.bincount(train.labels, minlength=10).tolist() == README_TRAIN_COUNTS
    assert torch.bincount(test.labels, minlength=10).tolist() == README_TEST_COUNTS
    assert train.images.shape == (1000, 10, 2, 34, 34) and train.images.dtype == torch.uint8
    assert train.info.kind == "events" and train.scale == 1.0
    # every recording has thousands of events, spread evenly over the 10 frames (split by count)
    per_frame = train.images[:50].sum((2, 3, 4), dtype=torch.int64)
    assert per_frame.min() > 100 and (per_frame.max(1).values - per_frame.min(1).values).max() <= 1
    assert real_nmnist["again"].meta["cached"] and not train.meta["cached"]
    assert real_nmnist["decoded"] >= 1100 and real_nmnist["decoded_again"] == 0  # every recording, then none
    assert torch.equal(real_nmnist["again"].images, train.images)
    x, _ = train[0]
    assert x.shape == (10, 2, 34, 34) and x.dtype == torch.float32


def test_real_first_saccade_and_time_split(shared_data):
    full = load_dataset("nmnist", "test", shared_data, frames=3, split_by="time")
    first = load_dataset("nmnist", "test", shared_data, frames=3, split_by="time", first_saccade=True)
    n_full = full.images.sum((1, 2, 3, 4), dtype=torch.int64)
    n_first = first.images.sum((1, 2, 3, 4), dtype=torch.int64)
    # the first of three 100 ms saccades holds about a third of the events
    ratio = (n_first.float() / n_full.float()).median().item()
    assert 0.2 < ratio < 0.45
    assert first.meta["options"]["first_saccade"] and first.images.shape[1] == 3


def test_40_bit_decoding_with_overflow_marker():
    data = nmnist_bytes([3, 0, 5], [4, 240, 6], [1000, 0, 2000], [1, 0, 0])
    ev = read_nmnist_bin(data, "x.bin")
    # the y = 240 event is a marker: dropped, and later timestamps move by 2^13 µs
    assert ev.x.tolist() == [3, 5] and ev.y.tolist() == [4, 6] and ev.p.tolist() == [1, 0]
    assert ev.t.tolist() == [1000, 2000 + 8192]
    big = read_nmnist_bin(nmnist_bytes([0], [0], [(1 << 23) - 1], [1]), "x.bin")
    assert big.t.tolist() == [(1 << 23) - 1] and big.p.tolist() == [1]


def _recording(rng, n=40):
    return nmnist_bytes(
        rng.integers(0, 34, n),
        rng.integers(0, 34, n),
        np.sort(rng.integers(0, 3 * 10**5, n)),
        rng.integers(0, 2, n),
    )


def _write_tree(base, rng, per_digit=(2, 1)):
    files = {}
    for split, count in zip(("Train", "Test"), per_digit):
        for digit in range(10):
            for i in range(count):
                files[f"NMNIST/{split}/{digit}/{digit * 10 + i:05d}.bin"] = _recording(rng)
    for name, data in files.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def test_extracted_tar_and_zip_layouts_give_the_same_frames(tmp_path):
    rng = np.random.default_rng(1)
    files = _write_tree(tmp_path / "folder", rng)
    a = load_dataset("nmnist", "train", tmp_path / "folder", frames=4)
    assert len(a) == 20 and a.labels.tolist() == [d for d in range(10) for _ in range(2)]
    (tmp_path / "tar" / "NMNIST").mkdir(parents=True)
    with tarfile.open(tmp_path / "tar" / "NMNIST" / "nmnist.tar.gz", "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    b = load_dataset("nmnist", "train", tmp_path / "tar", frames=4)
    (tmp_path / "zip" / "NMNIST").mkdir(parents=True)
    with zipfile.ZipFile(tmp_path / "zip" / "NMNIST" / "Train.zip", "w") as zf:
        for name, data in files.items():
            zf.writestr(name.removeprefix("NMNIST/"), data)
    c = load_dataset("nmnist", "test", tmp_path / "zip", frames=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert len(c) == 10 and c.labels.tolist() == list(range(10))
    assert a.images.sum() == 20 * 40  # every event counted once
    # nothing is written next to the data
    assert sorted(p.name for p in (tmp_path / "tar" / "NMNIST").iterdir()) == ["nmnist.tar.gz"]


def test_frames_are_cached_per_option_set(tmp_path):
    _write_tree(tmp_path, np.random.default_rng(2), per_digit=(1, 1))
    first = load_dataset("nmnist", "train", tmp_path, frames=5)
    again = load_dataset("nmnist", "test", tmp_path, frames=5)
    other = load_dataset("nmnist", "train", tmp_path, frames=2)
    assert not first.meta["cached"] and again.meta["cached"] and not other.meta["cached"]
    assert other.images.shape[1] == 2 and first.images.shape[1] == 5
    caches = list((tmp_path / "cache" / "datasets").glob("nmnist-*.npz"))
    assert len(caches) == 2
    # a damaged cache file is ignored and rebuilt, never trusted
    for path in caches:
        path.write_bytes(b"garbage")
    rebuilt = load_dataset("nmnist", "train", tmp_path, frames=5)
    assert not rebuilt.meta["cached"] and torch.equal(rebuilt.images, first.images)
    assert load_dataset("nmnist", "train", tmp_path, frames=5).meta["cached"]


def test_bad_options_and_files_are_clear(tmp_path):
    files = _write_tree(tmp_path, np.random.default_rng(3), per_digit=(1, 1))
    with pytest.raises(UsageError, match="frames must be a positive integer"):
        load_dataset("nmnist", "train", tmp_path, frames=0)
    with pytest.raises(UsageError, match="first_saccade must be true or false"):
        load_dataset("nmnist", "train", tmp_path, first_saccade="yes")
    with pytest.raises(UsageError, match=r"does not take option\(s\) saccades"):
        load_dataset("nmnist", "train", tmp_path, saccades=1)
    name = next(iter(files))
    path = tmp_path / name
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(DataError, match=r"00000.bin: 198 bytes is not a whole number of 5-byte events"):
        load_dataset("nmnist", "train", tmp_path)
    path.write_bytes(nmnist_bytes([50], [0], [0], [1]))
    with pytest.raises(DataError, match=r"00000.bin: event 0 at x=50, y=0 lies outside the 34×34 sensor"):
        load_dataset("nmnist", "train", tmp_path)
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"00000.bin: empty file"):
        load_dataset("nmnist", "train", tmp_path)
    with pytest.raises(
        DataError, match=r"nmnist: N-MNIST Train/Test folders or archive not found \(looked in"
    ):
        load_dataset("nmnist", "train", tmp_path / "nowhere")
    with pytest.raises(DataError, match="no data root"):
        load_dataset("nmnist", "train")


def test_truncated_archive_is_clear(tmp_path):
    rng = np.random.default_rng(4)
    folder = tmp_path / "NMNIST"
    folder.mkdir()
    with tarfile.open(folder / "nmnist.tar.gz", "w:gz") as tar:
        for i in range(30):
            data = _recording(rng, 400)
            info = tarfile.TarInfo(f"NMNIST/Train/{i % 10}/{i:05d}.bin")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = folder / "nmnist.tar.gz"
    archive.write_bytes(archive.read_bytes()[:-3000])
    with pytest.raises(DataError, match=r"nmnist.tar.gz: not a readable tar archive.*truncated or corrupt"):
        load_dataset("nmnist", "train", tmp_path)
