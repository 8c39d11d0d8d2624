import os
from pathlib import Path

import pytest
import torch

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
