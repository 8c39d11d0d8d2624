import gzip
import os
import struct
from pathlib import Path

# spikeshield before torch, as the `spikeshield` command does: idle OpenMP threads then sleep
# (OMP_WAIT_POLICY=PASSIVE) and every train()/evaluate()/main() in this process runs one thread per
# usable CPU. Imported after torch, OpenMP spins and spikeshield.runtime leaves out the CPUs other
# processes keep busy at that moment, so each call's thread count followed the machine's load; float
# results differ bit for bit between 1 and 2 threads, and the tests comparing two trainings in
# this process (test_trainer's same-seed, resume, fake-gradient tests) failed when the load changed.
from spikeshield import runtime  # isort: split

import pytest
import torch

if runtime.spin_waiting():  # OpenMP loaded before this file (a plugin): at least ignore the load
    runtime._running_elsewhere = lambda samples=5, pause=0.01: 0

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

os.environ.setdefault("SPIKESHIELD_PROGRESS", "0")


@pytest.fixture(autouse=True)
def _isolate(tmp_path, monkeypatch):
    """Every test gets its own cache folder, a fixed seed, and no data root from the caller."""
    monkeypatch.setenv("SPIKESHIELD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SPIKESHIELD_DATA", raising=False)
    torch.manual_seed(0)


@pytest.fixture
def shared_data() -> Path:
    """The real datasets in ../shared/data (MNIST IDX, CIFAR-10 JPEG, N-MNIST subset)."""
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


def write_idx(path, array_bytes: bytes, dims, magic=0x0803):
    header = struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array_bytes)


@pytest.fixture
def tiny_mnist(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, n in (("train", 6), ("t10k", 4)):
        write_idx(raw / f"{split}-images-idx3-ubyte.gz", bytes(n * 784), (n, 28, 28))
        write_idx(raw / f"{split}-labels-idx1-ubyte.gz", bytes(range(n)), (n,), magic=0x0801)
    return tmp_path
