"""The packaging claims hold: the Python version pyproject promises is one the code runs on; the
wheel and the sdist that ``python -m build`` makes hold what they should (issue 20)."""

import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
import vermin
from packaging.requirements import Requirement
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


# ---------------------------------------------------------------------------- the built distributions
@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    """The sdist, and the wheel built from it, as ``python -m build`` makes them (without an isolated
    build environment: the test extra brings setuptools and build)."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


def sdist_files(sdist: Path) -> set[str]:
    with tarfile.open(sdist) as tar:
        return {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()}


def wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as whl:
        return set(whl.namelist())


def test_the_sdist_is_the_whole_source_tree(dists):
    """Every file git tracks (or would: untracked, not ignored) is in the sdist, and nothing else
    but the metadata setuptools adds: a complete test suite, docs/, experiments/, results/."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout (an unpacked sdist): no list of tracked files to compare with")
    tracked = {f for f in listed.stdout.splitlines() if (ROOT / f).is_file()} - {".gitignore"}
    shipped = sdist_files(dists["sdist"])
    metadata = {f for f in shipped if f in ("PKG-INFO", "setup.cfg") or ".egg-info/" in f}
    assert tracked - shipped == set(), "tracked files missing from the sdist"
    assert shipped - tracked - metadata == set(), "files in the sdist that git does not track"
    for needed in ("tests/conftest.py", "tests/__init__.py", "tests/data/conftest.py", "docs/datasets.md"):
        assert needed in shipped
    assert any(f.startswith("experiments/") and f.endswith(".toml") for f in shipped)


def test_the_digits_notice_ships_beside_the_data(dists):
    notice = "spikeshield/data/embedded/README.md"
    data = "spikeshield/data/embedded/digits-8x8.u8.gz"
    wheel = wheel_files(dists["wheel"])
    assert {notice, data} <= wheel
    assert {f"src/{notice}", f"src/{data}"} <= sdist_files(dists["sdist"])
    with zipfile.ZipFile(dists["wheel"]) as whl:
        text = whl.read(notice).decode()
        metadata = whl.read(next(f for f in wheel if f.endswith(".dist-info/METADATA"))).decode()
    for words in (
        "CC BY 4.0",
        "creativecommons.org/licenses/by/4.0",
        "Alpaydin",
        "Kaynak",
        "archive.ics.uci.edu",
    ):
        assert words in text
    assert "License-Expression: MIT AND CC-BY-4.0" in metadata
    assert any(f.endswith(f".dist-info/licenses/src/{notice}") for f in wheel)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in readme and "Alpaydin" in readme


def test_the_wheel_holds_the_package_and_its_data_only(dists):
    files = wheel_files(dists["wheel"])
    tops = {f.split("/", 1)[0] for f in files}
    assert tops == {"spikeshield", dists["wheel"].name.split("-py3")[0] + ".dist-info"}
    assert {"spikeshield/__main__.py", "spikeshield/kernels/csrc/neurons.c", "spikeshield/py.typed"} <= files
    with zipfile.ZipFile(dists["wheel"]) as whl:
        entry_points = whl.read(next(f for f in files if f.endswith("entry_points.txt"))).decode()
    assert "spikeshield = spikeshield.cli:entry" in entry_points


# import names of the distributions the extras bring
IMPORT_NAME = {
    "matplotlib": "matplotlib",
    "pillow": "PIL",
    "lz4": "lz4",
    "zstandard": "zstandard",
    "nir": "nir",
    "pytorch-msssim": "pytorch_msssim",
}


def test_every_extra_brings_something_the_code_imports():
    """No extra pulls a package nothing uses (PyYAML was one); ``all`` is every user-facing extra."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "src").rglob("*.py"))
    user_facing = set()
    for name, requirements in extras.items():
        if name in ("test", "all"):
            continue
        for requirement in requirements:
            dist = Requirement(requirement).name.lower()
            user_facing.add(dist)
            module = IMPORT_NAME[dist]
            assert re.search(rf"^\s*(import|from) {module}\b", source, re.M), f"extra {name}: {dist} unused"
    assert {Requirement(r).name.lower() for r in extras["all"]} == user_facing
