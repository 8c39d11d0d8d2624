import gzip
import shutil

import pytest
import torch

from spikeshield.data import load_dataset
from spikeshield.data.idx import read_idx
from spikeshield.errors import DataError

from ..conftest import write_idx


def test_real_mnist_files(shared_data):
    train = load_dataset("mnist", "train", shared_data)
    test = load_dataset("mnist", "test", shared_data)
    assert (len(train), len(test)) == (60000, 10000)
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the well-known first labels
    assert test.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert torch.bincount(train.labels).tolist()[:3] == [5923, 6742, 5958]


def test_data_root_from_environment(shared_data, monkeypatch):
    monkeypatch.setenv("SPIKESHIELD_DATA", str(shared_data))
    assert len(load_dataset("mnist", "test", limit=10)) == 10


def test_small_written_files_load(tiny_mnist):
    ds = load_dataset("mnist", "train", tiny_mnist)
    assert len(ds) == 6 and ds.labels.tolist() == [0, 1, 2, 3, 4, 5]


def test_missing_root_and_missing_file_are_clear(tmp_path, tiny_mnist):
    with pytest.raises(DataError, match="no data root given"):
        load_dataset("mnist", "train")
    with pytest.raises(
        DataError, match=r"train images \(train-images-idx3-ubyte.gz\) not found.*--data-root"
    ):
        load_dataset("mnist", "train", tmp_path / "nowhere")
    (tiny_mnist / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_dataset("mnist", "test", tiny_mnist)


def test_truncated_file_is_clear(tiny_mnist):
    path = tiny_mnist / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    with gzip.open(path, "wb") as fh:
        fh.write(raw[:-100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz.*truncated or corrupt"):
        load_dataset("mnist", "train", tiny_mnist)


def test_not_gzip_and_bad_magic_are_clear(tiny_mnist):
    path = tiny_mnist / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    path.write_bytes(b"this is not gzip at all")
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz.*not a readable gzip"):
        load_dataset("mnist", "train", tiny_mnist)
    write_idx(path, bytes(784), (1, 28, 28), magic=0x12345678)
    with pytest.raises(DataError, match="bad IDX magic"):
        load_dataset("mnist", "train", tiny_mnist)


def test_label_image_count_mismatch_is_clear(tiny_mnist):
    write_idx(
        tiny_mnist / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz", bytes(range(5)), (5,), magic=0x0801
    )
    with pytest.raises(DataError, match="6 images but .* 5 labels"):
        load_dataset("mnist", "train", tiny_mnist)


def test_read_idx_uncompressed(tmp_path, tiny_mnist):
    src = tiny_mnist / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    dst = tmp_path / "labels.idx"
    with gzip.open(src) as fin, open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    assert read_idx(dst, expected_dims=1).tolist() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(DataError, match="1 dimensions, expected 3"):
        read_idx(dst, expected_dims=3)
