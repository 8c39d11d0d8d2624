"""The README's "Export to NIR" code block runs as written."""

from __future__ import annotations

import re
from pathlib import Path

from .conftest import need

need("nir")

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_nir_block_runs(tmp_path, monkeypatch):
    section = README.read_text(encoding="utf-8").split("## Export to NIR", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md", "exec"), {})
    assert (tmp_path / "cnn-lif.nir").is_file()
