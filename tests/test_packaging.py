"""The packaging claims hold: the Python version pyproject promises is one the code runs on."""

import sys
import tomllib
from pathlib import Path

import vermin
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
REQUIRES = SpecifierSet(PYPROJECT["project"]["requires-python"])


def declared_minimum() -> tuple[int, int]:
    """The lowest 3.x release that ``requires-python`` admits."""
    admitted = [(3, minor) for minor in range(30) if f"3.{minor}" in REQUIRES]
    assert admitted, f"requires-python {REQUIRES} admits no Python 3 release"
    return admitted[0]


def test_code_needs_no_newer_python_than_declared():
    """vermin reads every source file and names the oldest Python that has every feature,
    module and function it uses (``tomllib`` alone needs 3.11)."""
    config = vermin.Config()
    needs: dict[Path, tuple[int, int]] = {}
    for folder in ("src", "tests", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            found = vermin.detect(path.read_text(encoding="utf-8"), config, path=str(path))[1]
            assert found is not None, f"{path}: vermin finds it incompatible with every Python 3"
            needs[path] = found
    worst = max(needs.values())
    newest = sorted(str(p.relative_to(ROOT)) for p, v in needs.items() if v == worst)
    assert worst <= declared_minimum(), (
        f"{newest} need Python {worst[0]}.{worst[1]} but pyproject says {REQUIRES}"
    )


def test_running_python_satisfies_the_claim():
    running = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    assert running in REQUIRES, f"tests run on Python {running}, outside requires-python {REQUIRES}"


def test_ruff_targets_the_declared_minimum():
    major, minor = declared_minimum()
    assert PYPROJECT["tool"]["ruff"]["target-version"] == f"py{major}{minor}"
