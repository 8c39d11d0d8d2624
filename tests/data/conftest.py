"""Real datasets decoded once per test session (each in its own cache folder)."""

import time
from pathlib import Path

import pytest

from spikeshield.data import load_dataset

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _load_both(name, cache, **options):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPIKESHIELD_CACHE", str(cache))
        mp.delenv("SPIKESHIELD_DATA", raising=False)
        start = time.perf_counter()
        train = load_dataset(name, "train", SHARED_DATA, **options)
        test = load_dataset(name, "test", SHARED_DATA, **options)
        first = time.perf_counter() - start
        start = time.perf_counter()
        again = load_dataset(name, "train", SHARED_DATA, **options)
        cached = time.perf_counter() - start
    return {"train": train, "test": test, "again": again, "first_s": first, "cached_s": cached}


@pytest.fixture(scope="session")
def real_cifar10(tmp_path_factory):
    """The full CIFAR-10 JPEG archive, decoded once (~20-40 s on these machines), then cached."""
    if not (SHARED_DATA / "CIFAR10" / "cifar10-jpeg.tar.gz").is_file():
        pytest.skip(f"real CIFAR-10 archive not found under {SHARED_DATA}")
    return _load_both("cifar10", tmp_path_factory.mktemp("cifar10-cache"))


@pytest.fixture(scope="session")
def real_nmnist(tmp_path_factory):
    """The real N-MNIST subset (1,000 + 100 recordings) as 10 frames, decoded once."""
    if not (SHARED_DATA / "NMNIST" / "nmnist-subset.tar.gz").is_file():
        pytest.skip(f"real N-MNIST subset not found under {SHARED_DATA}")
    return _load_both("nmnist", tmp_path_factory.mktemp("nmnist-cache"))
