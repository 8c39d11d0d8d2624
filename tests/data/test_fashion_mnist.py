import gzip
import shutil

import pytest
import torch

from spikeshield.data import fashion_mnist as fm
from spikeshield.data import load_dataset
from spikeshield.errors import DataError

DEBIAN = fm.DEBIAN_FOLDER


@pytest.fixture
def debian_files():
    if not (DEBIAN / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"{DEBIAN} not installed (apt-get install dataset-fashion-mnist; .ci/run does)")
    return DEBIAN


def test_real_files_found_without_a_root(debian_files):
    train = load_dataset("fashion-mnist", "train")
    test = load_dataset("fashion-mnist", "test")
    assert (len(train), len(test)) == (60000, 10000)
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert train.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]  # the published first labels
    assert test.labels[:5].tolist() == [9, 2, 1, 1, 6]
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert train.meta["files"][0].startswith(str(debian_files))


def test_a_data_root_without_the_files_falls_back_to_debian(debian_files, tmp_path):
    assert len(load_dataset("fashion-mnist", "test", tmp_path, limit=5)) == 5


def test_files_under_the_data_root_come_first(tmp_path, monkeypatch):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for split, n in (("train", 3), ("t10k", 2)):
        with gzip.open(raw / f"{split}-images-idx3-ubyte.gz", "wb") as fh:
            fh.write(
                b"\x00\x00\x08\x03" + n.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(n * 784)
            )
        with gzip.open(raw / f"{split}-labels-idx1-ubyte.gz", "wb") as fh:
            fh.write(b"\x00\x00\x08\x01" + n.to_bytes(4, "big") + bytes(range(n)))
    assert len(load_dataset("fashion-mnist", "train", tmp_path)) == 3
    # with no Debian folder and no root, the error names where it looked
    monkeypatch.setattr(fm, "DEBIAN_FOLDER", tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"fashion-mnist: train images .* not found \(looked for .*nowhere"):
        load_dataset("fashion-mnist", "train")
    shutil.rmtree(raw)
    with pytest.raises(DataError, match=r"looked for .*FashionMNIST/raw/train-images-idx3-ubyte.gz"):
        load_dataset("fashion-mnist", "train", tmp_path)
