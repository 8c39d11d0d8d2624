"""The sampling experiment file: checked before any work, run end to end (digits), resumed."""

import json

import pytest

from spikeshield.cli import main
from spikeshield.errors import UsageError
from spikeshield.sampling.experiment import load_sampling_plan, parse_sampling_plan, shrink_sampling_plan

TOML = """
name = "tiny"
seeds = [0, 1]
rates = [0.2, 0.5]
masks = ["spiking", "random", "grid", "magnitude"]
[train]
epochs = 1
hidden = 4
recon_hidden = 8
recon_layers = 2
limit_train = 300
[datasets.digits]
reduced = true
"""

EVENTS_TOML = """
name = "tiny-events"
seeds = [0]
[train]
epochs = 1
hidden = 4
recon_hidden = 8
recon_layers = 2
[events]
rates = [0.2, 1.0]
compressor = "xz"
train = { time_steps = 4 }
classifier = { model = "cnn", epochs = 1, batch_size = 32 }
"""


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"seeds": [0], "datasets": {"digits": {}}, "colour": 1}, "does not take option"),
        (
            {"seeds": [0], "datasets": {"digits": {"train": {"epochs": 0}}}},
            "epochs must be a positive integer",
        ),
        ({"seeds": [0], "datasets": {"digits": {"train": {"speed": 3}}}}, "unexpected keyword"),
        ({"seeds": [0], "rates": [0.0], "datasets": {"digits": {}}}, r"must be in \(0, 1\]"),
        ({"seeds": [0], "masks": ["oracle"], "datasets": {"digits": {}}}, "masks must be a list"),
        ({"seeds": [0]}, "nothing to run"),
        ({"seeds": [0], "events": {"compressor": "zip"}}, "events.compressor must be one of gz, bz2, xz"),
        ({"seeds": [0], "datasets": {"nosuch": {}}}, "nosuch"),
    ],
)
def test_bad_experiment_files_fail_before_any_work(raw, message):
    with pytest.raises(UsageError, match=message):
        parse_sampling_plan(raw, "x.toml")


def test_the_committed_experiment_files_are_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for name, datasets in (
        ("sampling.toml", {"mnist", "fashion-mnist", "cifar10"}),
        ("sampling-paper.toml", {"mnist", "fashion-mnist", "cifar10"}),
    ):
        plan = load_sampling_plan(root / "experiments" / name)
        assert plan.seeds == [0, 1, 2] and plan.events is not None
        assert set(plan.datasets) == datasets
        assert all(d["reduced"] for d in plan.datasets.values()) == (name == "sampling.toml")
    small = shrink_sampling_plan(plan, seeds=[0], datasets=["mnist"], epochs=1)
    assert small.seeds == [0] and list(small.datasets) == ["mnist"] and small.events is None


def test_a_tiny_grid_runs_resumes_and_refuses_another_experiment(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(TOML)
    out = tmp_path / "grid"
    assert main(["sample", "experiment", str(path), "--out", str(out), "--device", "cpu"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = {(r["mask"], r["rate"]): r for r in summary["images"]}
    assert {m for m, _ in rows} == {
        "spiking",
        "random",
        "grid",
        "magnitude",
        "random-equal-bits",
        "grid-equal-bits",
    }
    assert rows[("spiking", 0.2)]["psnr"]["n"] == 2 and "psnr_minus_random" in rows[("spiking", 0.2)]
    table = (out / "table.md").read_text()
    assert "REDUCED (CPU budget)" in table and "spiking − random" in table
    for name in ("table.csv", "psnr_digits.png", "masks_digits.png", "COMMAND"):
        assert (out / name).is_file()
    evaluation = out / "runs" / "digits" / "s1" / "evaluation.json"
    stamp = evaluation.stat().st_mtime_ns
    assert main(["sample", "experiment", str(path), "--out", str(out), "--device", "cpu"]) == 0
    assert evaluation.stat().st_mtime_ns == stamp  # resumed: nothing redone
    assert len((out / "COMMAND").read_text().splitlines()) == 4
    path.write_text(TOML.replace("rates = [0.2, 0.5]", "rates = [0.3]"))
    capsys.readouterr()
    assert main(["sample", "experiment", str(path), "--out", str(out)]) == 2
    assert "another sampling experiment" in capsys.readouterr().err


def test_the_dvs_branch_sets_the_kept_events_beside_the_lossless_baseline(tmp_path, small_nmnist):
    path = tmp_path / "events.toml"
    path.write_text(EVENTS_TOML)
    out = tmp_path / "grid"
    argv = ["sample", "experiment", str(path), "--out", str(out), "--device", "cpu"]
    argv += ["--data-root", str(small_nmnist)]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    base = summary["events_lossless"]
    assert base["compressor"] == "xz" and set(base["lossless_bytes"]) == {"gz", "bz2", "xz"}
    assert all(0 < size < base["bin_bytes"] for size in base["lossless_bytes"].values())
    low, every = summary["events"]
    assert every["archive_bytes"]["mean"] == base["lossless_bytes"]["xz"]  # rate 1 keeps every event
    assert every["random_archive_bytes"]["mean"] == base["lossless_bytes"]["xz"]
    assert low["archive_ratio"]["mean"] > 3 * every["archive_ratio"]["mean"]
    assert low["random_archive_ratio"]["mean"] > 3 * every["archive_ratio"]["mean"]
    names = sorted(p.name for p in (out / "events" / "s0").glob("*.tar.xz"))
    assert names == ["random-r0.2.tar.xz", "random-r1.tar.xz", "sampler-r0.2.tar.xz", "sampler-r1.tar.xz"]
    table = (out / "table.md").read_text()
    assert "| lossless .tar.xz (used below) |" in table and "random drop + xz: MB" in table
