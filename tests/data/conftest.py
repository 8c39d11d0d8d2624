"""Real datasets decoded once per test session (each in its own cache folder)."""

import importlib
from pathlib import Path

import pytest

from spikeshield.data import load_dataset

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
#: what decodes the raw files: the JPEG archive, one N-MNIST recording
CIFAR_DECODER = "spikeshield.data.cifar10:decode_jpeg_archive"
NMNIST_DECODER = "spikeshield.data.nmnist:read_nmnist_bin"


def _load_both(name, cache, decoder, **options):
    """Both splits, then the training split again; ``decoded``/``decoded_again``: the calls of
    ``decoder`` ("module:function", the reader of the raw files) in each (counted, not timed: a
    wall-clock ratio depends on the machine's load)."""
    module, function = decoder.split(":")
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPIKESHIELD_CACHE", str(cache))
        mp.delenv("SPIKESHIELD_DATA", raising=False)
        real = getattr(importlib.import_module(module), function)

        def counted(*args, **kwargs):
            calls.append(1)
            return real(*args, **kwargs)

        mp.setattr(f"{module}.{function}", counted)
        train = load_dataset(name, "train", SHARED_DATA, **options)
        test = load_dataset(name, "test", SHARED_DATA, **options)
        decoded = len(calls)
        again = load_dataset(name, "train", SHARED_DATA, **options)
    return {
        "train": train,
        "test": test,
        "again": again,
        "decoded": decoded,
        "decoded_again": len(calls) - decoded,
    }


@pytest.fixture(scope="session")
def real_cifar10(tmp_path_factory):
    """The full CIFAR-10 JPEG archive, decoded once (~20-40 s on these machines), then cached."""
    if not (SHARED_DATA / "CIFAR10" / "cifar10-jpeg.tar.gz").is_file():
        pytest.skip(f"real CIFAR-10 archive not found under {SHARED_DATA}")
    return _load_both("cifar10", tmp_path_factory.mktemp("cifar10-cache"), CIFAR_DECODER)


@pytest.fixture(scope="session")
def real_nmnist(tmp_path_factory):
    """The real N-MNIST subset (1,000 + 100 recordings) as 10 frames, decoded once."""
    if not (SHARED_DATA / "NMNIST" / "nmnist-subset.tar.gz").is_file():
        pytest.skip(f"real N-MNIST subset not found under {SHARED_DATA}")
    return _load_both("nmnist", tmp_path_factory.mktemp("nmnist-cache"), NMNIST_DECODER)
