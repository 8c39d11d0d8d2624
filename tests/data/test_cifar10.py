import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from spikeshield.data import load_dataset
from spikeshield.data.cifar10 import CLASSES, SafeArrayUnpickler, read_cifar_batch
from spikeshield.errors import DataError, UsageError

from .conftest import SHARED_DATA
from .formats import cifar_batch_bytes, write_cifar_batches


def test_real_jpeg_archive_counts_labels_and_cache(real_cifar10):
    train, test, again = real_cifar10["train"], real_cifar10["test"], real_cifar10["again"]
    assert (len(train), len(test)) == (50000, 10000)
    assert train.images.shape == (50000, 3, 32, 32) and train.images.dtype == torch.uint8
    assert torch.bincount(train.labels).tolist() == [5000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert train.meta["format"] == "jpeg" and not train.meta["cached"]
    assert again.meta["cached"] and torch.equal(again.images, train.images)
    assert torch.equal(again.labels, train.labels)
    # the archive was decoded once, and reading the cache decoded nothing
    assert real_cifar10["decoded"] == 1 and real_cifar10["decoded_again"] == 0
    # the decoded pixels are real photographs with CIFAR-10's statistics, not zeros or noise
    mean = train.images[::10].float().div(255).mean((0, 2, 3))  # every class, 5,000 images
    assert torch.allclose(mean, torch.tensor([0.491, 0.482, 0.447]), atol=0.02)
    # the cache lives in the cache folder, never next to the data
    assert train.meta["cache"] and not train.meta["cache"].startswith(str(SHARED_DATA))


def _tiny_jpeg_archive(path, per_class=2, size=32, bad_member=None):
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "test"):
            for name in CLASSES:
                for i in range(per_class):
                    # a flat colour per class, so decoding can be checked through JPEG loss
                    colour = (CLASSES.index(name) * 25, 128, 255 - CLASSES.index(name) * 25)
                    image = Image.new("RGB", (size, size), colour)
                    buffer = io.BytesIO()
                    image.save(buffer, format="JPEG", quality=95)
                    data = buffer.getvalue()
                    member = f"{split}/{name}/{i:04d}.jpg"
                    if member == bad_member:
                        data = rng.bytes(200)
                    info = tarfile.TarInfo(member)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


def test_jpeg_archive_decoded_once_then_cached(tmp_path):
    root = tmp_path / "data"
    (root / "CIFAR10").mkdir(parents=True)
    archive = root / "CIFAR10" / "cifar10-jpeg.tar.gz"
    _tiny_jpeg_archive(archive)
    first = load_dataset("cifar10", "train", root)
    assert len(first) == 20 and first.meta["format"] == "jpeg" and not first.meta["cached"]
    assert first.labels.tolist() == [c for c in range(10) for _ in range(2)]
    # the flat colour of class c survives JPEG within a few levels
    assert abs(int(first.images[2 * 3, 0, 5, 5]) - 75) <= 3 and abs(int(first.images[0, 1, 0, 0]) - 128) <= 3
    second = load_dataset("cifar10", "test", root)
    assert second.meta["cached"] and len(second) == 20
    cache_files = list((tmp_path / "cache" / "datasets").glob("cifar10-jpeg-*.npz"))
    assert len(cache_files) == 1
    assert not any(p.suffix == ".npz" for p in root.rglob("*"))  # nothing written next to the data
    # a changed archive invalidates the cache (and the stale cache file is removed)
    _tiny_jpeg_archive(archive, per_class=3)
    os.utime(archive, ns=(1, 1))
    changed = load_dataset("cifar10", "train", root)
    assert len(changed) == 30 and not changed.meta["cached"]
    assert list((tmp_path / "cache" / "datasets").glob("cifar10-jpeg-*.npz")) != cache_files
    assert len(list((tmp_path / "cache" / "datasets").glob("cifar10-jpeg-*.npz"))) == 1


def test_corrupt_jpeg_and_truncated_archive_are_clear(tmp_path):
    archive = tmp_path / "cifar10-jpeg.tar.gz"
    _tiny_jpeg_archive(archive, per_class=1, bad_member="train/cat/0000.jpg")
    with pytest.raises(
        DataError, match=r"cifar10-jpeg.tar.gz: member train/cat/0000.jpg is not a readable JPEG"
    ):
        load_dataset("cifar10", "train", tmp_path)
    _tiny_jpeg_archive(archive, per_class=1)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(
        DataError, match=r"cifar10-jpeg.tar.gz: not a readable tar archive.*truncated or corrupt"
    ):
        load_dataset("cifar10", "train", tmp_path)
    _tiny_jpeg_archive(archive, per_class=1, size=28)
    with pytest.raises(DataError, match=r"is 28×28, expected 32×32"):
        load_dataset("cifar10", "train", tmp_path)


def test_python_pickle_batches(tmp_path):
    written = write_cifar_batches(tmp_path / "cifar-10-batches-py", per_batch=4)
    train = load_dataset("cifar10", "train", tmp_path)
    test = load_dataset("cifar10", "test", tmp_path)
    assert (len(train), len(test)) == (20, 4) and train.meta["format"] == "pickle"
    expected = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert np.array_equal(train.images.numpy(), expected)  # R, G, B planes -> [3, 32, 32]
    assert test.labels.tolist() == list(written["test_batch"][1])
    assert train.images.dtype == torch.uint8 and train.info.normalize is not None
    # pickles win over the JPEG archive under format=auto; format=jpeg picks the archive
    _tiny_jpeg_archive(tmp_path / "cifar10-jpeg.tar.gz", per_class=1)
    assert load_dataset("cifar10", "train", tmp_path).meta["format"] == "pickle"
    assert load_dataset("cifar10", "train", tmp_path, format="jpeg").meta["format"] == "jpeg"
    with pytest.raises(UsageError, match="format must be one of auto, pickle, jpeg"):
        load_dataset("cifar10", "train", tmp_path, format="png")


class _RunsCode:
    """An object whose unpickling would call os.system: a classic malicious pickle."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/spikeshield-pwned",))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_batches(folder, per_batch=2)
    marker = tmp_path / "ran"
    evil = {"x": _RunsCode(), "data": np.zeros((1, 3072), np.uint8), "labels": [0]}
    payload = pickle.dumps(evil, protocol=2).replace(b"/tmp/spikeshield-pwned", str(marker).encode())
    (folder / "data_batch_3").write_bytes(payload)
    with pytest.raises(DataError, match=r"data_batch_3: refusing to load posix.system"):
        load_dataset("cifar10", "train", tmp_path)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        SafeArrayUnpickler(io.BytesIO(pickle.dumps(print)), encoding="bytes").load()


def test_truncated_or_wrong_batches_are_clear(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_batches(folder, per_batch=2)
    path = folder / "data_batch_2"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(DataError, match=r"data_batch_2: not a readable pickle.*truncated or corrupt"):
        read_cifar_batch(path)
    path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(DataError, match=r"data_batch_2: holds a list, expected a dict"):
        read_cifar_batch(path)
    path.write_bytes(cifar_batch_bytes(np.zeros((2, 3, 32, 32), np.uint8), [0, 11]))
    with pytest.raises(DataError, match=r"data_batch_2: labels outside 0..9"):
        read_cifar_batch(path)
    path.write_bytes(cifar_batch_bytes(np.zeros((2, 3, 32, 32), np.uint8), [0]))
    with pytest.raises(DataError, match=r"data_batch_2: 2 images but 1 labels"):
        read_cifar_batch(path)
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match=r"cifar10: .*not found \(looked in .*cifar-10-batches-py"):
        load_dataset("cifar10", "test", tmp_path)
    with pytest.raises(DataError, match="no data root"):
        load_dataset("cifar10", "test")
