"""Figures leave the caller's matplotlib alone, and without matplotlib every "wrote X" a command
prints is true and the skipped figures are named with the way to get them (issue 20)."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from spikeshield.analysis import plots
from spikeshield.cli import main

GRID = Path(__file__).parents[2] / "results" / "linear_leak" / "grid"
HINT = "matplotlib is not installed (pip install 'spikeshield[plot]')"


def test_plotting_keeps_the_callers_backend_and_pyplot_untouched(tmp_path):
    code = (
        "import sys, matplotlib\n"
        "matplotlib.use('svg')\n"
        "from spikeshield.analysis.plots import plot_curves\n"
        "path = plot_curves({'a': ([0, 1], [1, 0.5])}, sys.argv[1], title='t', xlabel='x')\n"
        "assert open(path, 'rb').read(4) == b'\\x89PNG'\n"
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "c.png")], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["svg", "False"]


@pytest.fixture
def no_matplotlib(monkeypatch):
    """``import matplotlib`` fails, as where it is not installed; the once-per-process warning is reset."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setattr(plots, "_warned", False)


def wrote(printed: str) -> list[Path]:
    """Every path on the ``wrote ...`` lines (a trailing ``(...)`` is a comment, not a path)."""
    lines = [line.removeprefix("wrote ") for line in printed.splitlines() if line.startswith("wrote ")]
    assert lines, printed
    return [Path(p) for line in lines for p in re.sub(r" \([^()]*\)$", "", line).split(", ")]


def run_without_matplotlib(capsys, argv: list[str]) -> str:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(argv) == 0
    assert [str(w.message) for w in caught if "matplotlib" in str(w.message)] == [
        "matplotlib is not installed: figures are skipped (pip install 'spikeshield[plot]')"
    ]
    return capsys.readouterr().out


def test_analyze_without_matplotlib(no_matplotlib, tmp_path, capsys):
    out = tmp_path / "rvl"
    printed = run_without_matplotlib(
        capsys, ["analyze", "rate-vs-leak", "--out", str(out), "--leaks", "0", "0.2", "--time-steps", "50"]
    )
    assert wrote(printed) == [out / "rate_vs_leak.json"] and (out / "rate_vs_leak.json").is_file()
    assert not (out / "rate_vs_leak.png").exists()
    assert f"skipped rate_vs_leak.png: {HINT}" in printed


def test_report_without_matplotlib(no_matplotlib, tmp_path, capsys):
    runs = [str(GRID / "runs" / "mnist" / f"mlp-if-s{s}") for s in (0, 1)]
    printed = run_without_matplotlib(capsys, ["report", *runs, "--out", str(tmp_path / "r")])
    files = wrote(printed)
    assert [f.name for f in files] == ["summary.json", "table.md", "table.csv"]
    assert all(f.is_file() for f in files) and not list((tmp_path / "r").glob("*.png"))
    assert f"skipped the figures (PNG): {HINT}" in printed


def test_train_and_evaluate_without_matplotlib(no_matplotlib, tmp_path, capsys):
    run = tmp_path / "run"
    train = ["train", "--model", "mlp", "--time-steps", "2", "--limit-train", "100", "--limit-test", "40"]
    assert main([*train, "--device", "cpu", "--out", str(run)]) == 0
    capsys.readouterr()
    evaluate = ["evaluate", "--run", str(run), "--attack", "fgsm", "--eps", "0", "0.1", "--corruption"]
    printed = run_without_matplotlib(capsys, [*evaluate, "gaussian", "--limit", "40", "--no-checks"])
    files = wrote(printed)
    assert [f.name for f in files] == ["robustness.json", "robustness.csv"]
    assert all(f.is_file() for f in files) and not list(files[0].parent.glob("*.png"))
    assert f"skipped the accuracy curves (PNG): {HINT}" in printed


def test_curve_styles_stay_distinct_past_the_ten_colours():
    styles = [plots.curve_style(i) for i in range(80)]
    assert [s["color"] for s in styles[:10]] == [f"C{i}" for i in range(10)]
    assert all(s["linestyle"] == "-" and s["marker"] == "o" for s in styles[:10])  # as matplotlib draws
    assert len({(s["color"], s["linestyle"]) for s in styles[:40]}) == 40
    assert len({(s["color"], s["marker"]) for s in styles}) == 80
    with pytest.raises(ValueError):
        plots.curve_style(-1)


def test_a_plot_of_fourteen_curves_draws_fourteen_different_styles(tmp_path, monkeypatch):
    """matplotlib's default cycle has 10 colours: curve 11 of a figure was drawn like curve 1."""
    pytest.importorskip("matplotlib")
    figures = []
    save = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig) or save(fig, path))
    curves = {f"variant {i}": ([0.0, 0.1, 0.2], [1.0, 0.9 - i / 100, 0.5]) for i in range(14)}
    path = plots.plot_curves(curves, tmp_path / "many.png", title="t", xlabel="eps")
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
    (ax,) = figures[0].axes
    from matplotlib.colors import to_hex

    drawn = [(to_hex(line.get_color()), line.get_linestyle(), line.get_marker()) for line in ax.get_lines()]
    assert len(drawn) == 14 and len(set(drawn)) == 14
    assert drawn[10][0] == drawn[0][0] and drawn[10][1:] != drawn[0][1:]  # same colour, other line
