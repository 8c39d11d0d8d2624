"""A small real N-MNIST data root (recordings taken from the shared subset, bytes unchanged)."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import pytest

from spikeshield.data.archive import iter_members
from spikeshield.data.nmnist import MAX_BIN_BYTES
from tests.conftest import SHARED_DATA

ARCHIVE = SHARED_DATA / "NMNIST" / "nmnist-subset.tar.gz"
PER_SPLIT = {"Train": 40, "Test": 20}


def real_members() -> dict[str, bytes]:
    """The first recordings of each split of the shared subset, ``{member name: original bytes}``."""
    found: dict[str, bytes] = {}
    counts = dict.fromkeys(PER_SPLIT, 0)
    for name, data in iter_members(ARCHIVE, re.compile(r"(Train|Test)/\d/[^/]+\.bin$"), MAX_BIN_BYTES):
        split = "Train" if "/Train/" in name else "Test"
        if counts[split] < PER_SPLIT[split]:
            counts[split] += 1
            found[name] = data
    return found


@pytest.fixture(scope="session")
def nmnist_members() -> dict[str, bytes]:
    if not ARCHIVE.is_file():
        pytest.skip(f"real N-MNIST subset not found under {SHARED_DATA}")
    return real_members()


@pytest.fixture(scope="session")
def small_nmnist(tmp_path_factory, nmnist_members) -> Path:
    """A data root holding ``NMNIST/nmnist-small.tar.gz``: 40 train and 20 test real recordings."""
    root = tmp_path_factory.mktemp("nmnist-root")
    (root / "NMNIST").mkdir()
    with tarfile.open(root / "NMNIST" / "nmnist-small.tar.gz", "w:gz") as tar:
        for name, data in nmnist_members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return root
