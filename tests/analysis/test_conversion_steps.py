"""Accuracy-vs-N aggregation of an experiment folder (python -m spikeshield.analysis.conversion)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spikeshield.analysis.conversion import main, steps_markdown, steps_summary, write_steps


def write_run(root: Path, name: str, *, mode: str, steps: int, accuracy: float, sweep=None, seed=0) -> None:
    run = root / "runs" / "mnist" / f"cnn-{name}-s{seed}"
    run.mkdir(parents=True)
    train = {"dataset": "mnist", "model": "cnn", "neuron": "if", "mode": mode, "time_steps": steps}
    (run / "config.json").write_text(json.dumps({"train": train}))
    (run / "metrics.json").write_text(json.dumps({"complete": True, "test_accuracy": accuracy}))
    if sweep is not None:
        method = "multistep" if mode == "noisy" else "ann2snn"
        rows = [{"time_steps": n, "v_init": v, "accuracy": a} for n, v, a in sweep]
        record = {"method": method, "neuron_options": {"reset": "soft", "v_init": 0.5},
                  "source_test_accuracy": 0.6, "sweep": rows}  # fmt: skip
        (run / "conversion.json").write_text(json.dumps(record))


@pytest.fixture
def grid(tmp_path):
    for seed, shift in ((0, 0.0), (1, 0.02)):
        write_run(tmp_path, "if-bptt-t1", mode="bptt", steps=1, accuracy=0.80 + shift, seed=seed)
        write_run(tmp_path, "if-bptt-t4", mode="bptt", steps=4, accuracy=0.90 + shift, seed=seed)
        write_run(tmp_path, "if-noisy", mode="noisy", steps=4, accuracy=0.9, seed=seed,
                  sweep=[(1, 0.5, 0.70 + shift), (4, 0.5, 0.90 + shift)])  # fmt: skip
        write_run(tmp_path, "if-ann2snn", mode="ann2snn", steps=4, accuracy=0.9, seed=seed,
                  sweep=[(1, 0.5, 0.50), (4, 0.5, 0.80), (1, 0.0, 0.1), (4, 0.0, 0.85 + shift)])  # fmt: skip
    (tmp_path / "runs" / "mnist" / "cnn-if-unfinished-s0").mkdir()
    return tmp_path


def test_curves_are_means_over_seeds_and_bptt_is_one_curve_over_t(grid):
    panel = steps_summary(grid, reduced=["mnist"])["panels"][0]
    curves = panel["curves"]
    assert set(curves) == {"BPTT at T = N (if)", "if-noisy", "if-ann2snn", "if-ann2snn (V[0]=0·V_th)",
                           "if-noisy: its source", "if-ann2snn: its source"}  # fmt: skip
    assert curves["if-noisy: its source"] == {1: {"mean": 0.6, "std": 0.0, "seeds": 2}}
    assert curves["BPTT at T = N (if)"][4]["mean"] == pytest.approx(0.91)
    assert curves["if-noisy"][1]["seeds"] == 2
    assert curves["if-noisy"][1]["std"] == pytest.approx(0.02**0.5 * 0.1)  # std of 0.70 and 0.72
    assert curves["if-ann2snn (V[0]=0·V_th)"][1]["mean"] == pytest.approx(0.1)
    assert panel["reduced"]


def test_needed_steps_is_the_first_n_where_the_ann_curve_catches_up(grid):
    needed = {(r["curve"], r["time_steps"], r["baseline"]): r["baseline_steps"]
              for r in steps_summary(grid)["panels"][0]["needed"]}  # fmt: skip
    assert needed[("if-noisy", 1, "if-ann2snn")] == 4  # 0.71 is reached at N = 4 (0.80)
    assert needed[("if-noisy", 4, "if-ann2snn")] is None  # 0.91 is never reached
    assert needed[("if-noisy", 4, "if-ann2snn (V[0]=0·V_th)")] is None  # 0.86 < 0.91


def test_written_files_and_the_module_entry_point(grid, capsys):
    assert main([str(grid)]) == 0
    assert {p.name for p in grid.iterdir()} >= {"steps.json", "steps.md", "steps_mnist_cnn.png"}
    text = (grid / "steps.md").read_text()
    assert "| if-noisy | 71.0 ± 1.4 | 91.0 ± 1.4 |" in text and "> sweep" in text
    assert text == steps_markdown(json.loads((grid / "steps.json").read_text()))
    assert [p.name for p in write_steps(grid)][:2] == ["steps.json", "steps.md"]


def test_an_empty_folder_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spikeshield: error:") and "holds no finished runs" in err and "\n" not in err
    assert main([]) == 2
