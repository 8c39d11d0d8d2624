"""Every repository file or folder that the README or docs/*.md name exists.

A name counts when it is a path whose first part is something in the repository: a top-level
entry (``benchmarks/x.py``, ``results/kernels/``) or a part of the package (``kernels/program.py``
or ``spikeshield/neurons/functional.py``, read under ``src/spikeshield``). Paths that describe a
user's files (``DIR/config.json``, ``<root>/MNIST/raw/``, ``../shared/data``) are not in the
repository and are skipped, as are bare file names, which the docs use for outputs
(``robustness.json``).
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "spikeshield"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OUTPUT_FOLDERS = {"runs", "build", "dist"}  # ignored by git: the docs name outputs there
# a run of "part/" pieces, optionally ending in a file name with an extension
PATH = re.compile(r"(?<![\w./~<>$-])((?:[\w.-]+/)+(?:[\w*-]+\.[A-Za-z]\w*)?)(?![\w/])")


def repository_paths(text: str) -> set[str]:
    top = {p.name for p in ROOT.iterdir() if not p.name.startswith(".") or p.name == ".ci"} - OUTPUT_FOLDERS
    inside = {p.name for p in PACKAGE.iterdir()} | {"spikeshield"}
    return {m for m in PATH.findall(text) if m.split("/", 1)[0] in top | inside}


def exists(path: str) -> bool:
    for base in (ROOT, ROOT / "src", PACKAGE):
        if "*" in path and any(base.glob(path.rstrip("/"))):
            return True
        if (base / path).exists():
            return True
    return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_files_named_in_the_docs_exist(doc):
    named = repository_paths(doc.read_text(encoding="utf-8"))
    missing = sorted(p for p in named if not exists(p))
    assert not missing, f"{doc.name} names files that do not exist: {missing}"


def test_the_path_finder_sees_what_the_docs_name():
    text = (
        "see `benchmarks/neuron_kernels.py`, [the doc](docs/robustness.md), kernels/program.py, "
        "results/kernels/ and spikeshield/neurons/lif.py; not DIR/config.json, "
        "<root>/MNIST/raw/, ../shared/data, ~/.cache/spikeshield or robustness.json"
    )
    assert repository_paths(text) == {
        "benchmarks/neuron_kernels.py",
        "docs/robustness.md",
        "kernels/program.py",
        "results/kernels/",
        "spikeshield/neurons/lif.py",
    }
    assert all(exists(p) for p in repository_paths(text))
    assert not exists("docs/no-such-page.md") and not exists("kernels/gone.py")
