import json

import pytest

from spikeshield.cli import main
from spikeshield.errors import UsageError
from spikeshield.experiments.runner import load_experiment, run_experiment

TINY = """
name = "tiny"
claim = "a test"
seeds = [0, 1]
models = ["mlp"]
model_options = { mlp = { hidden = [32] } }
[neurons.if]
neuron = "if"
[neurons.linear-lif]
neuron = "linear-lif"
options = { leak = 0.1 }
[train]
time_steps = 2
epochs = 1
[datasets.digits]
budget = "1 epoch"
eps = [0.0, 0.1, 0.3]
[evaluate]
attacks = ["fgsm", "pgd"]
steps = 3
gradients = ["bptt", "surrogate:atan:2"]
limit = 40
check_samples = 20
noises = { gaussian = [0.0, 0.3], salt-pepper = [0.0, 0.1] }
"""


def write(tmp_path, text=TINY, name="exp.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_grid_is_trained_evaluated_aggregated_and_resumes(tmp_path):
    path = write(tmp_path)
    out = tmp_path / "out"
    summary = run_experiment(path, out, log=lambda m: None, command="test")
    runs = sorted(p.name for p in (out / "runs" / "digits").iterdir())
    assert runs == ["mlp-if-s0", "mlp-if-s1", "mlp-linear-lif-s0", "mlp-linear-lif-s1"]
    for name in ("summary.json", "table.md", "table.csv", "digits_mlp.png", "COMMAND"):
        assert (out / name).exists(), name
    rows = summary["rows"]
    # 2 neurons × (2 noises × 2 levels + 2 attacks × 2 gradients × 3 eps)
    assert len(rows) == 2 * (4 + 12)
    assert all(r["seeds"] == 2 for r in rows)
    # the mean over seeds is the mean of the runs' own records
    per_run = [
        json.loads(
            (out / "runs" / "digits" / f"mlp-if-s{s}" / "robustness-bptt" / "robustness.json").read_text()
        )
        for s in (0, 1)
    ]
    want = (
        sum(
            next(r["accuracy"] for r in res["records"] if r.get("attack") == "pgd" and r["eps"] == 0.3)
            for res in per_run
        )
        / 2
    )
    got = next(
        r["mean"]
        for r in rows
        if r["neuron"] == "if" and r["perturbation"] == "pgd (bptt)" and r["level"] == 0.3
    )
    assert got == pytest.approx(want)
    # ε = 0 equals the clean accuracy of the evaluated subset, for every run and gradient
    for res in per_run:
        zero = next(r["accuracy"] for r in res["records"] if r.get("attack") == "pgd" and r["eps"] == 0)
        assert zero == res["clean_accuracy"]
    assert {v["perturbation"] for v in summary["verdicts"]} >= {
        "gaussian",
        "pgd (bptt)",
        "pgd (surrogate:atan:2)",
    }
    table = (out / "table.md").read_text()
    assert "| mlp | pgd (surrogate:atan:2) | 0.3 |" in table
    # rerunning does no work: weights and evaluations are kept
    model = out / "runs" / "digits" / "mlp-if-s0" / "model.safetensors"
    evaluation = out / "runs" / "digits" / "mlp-if-s0" / "robustness-bptt" / "robustness.json"
    stamps = model.stat().st_mtime_ns, evaluation.stat().st_mtime_ns
    again = run_experiment(path, out, log=lambda m: None)
    assert (model.stat().st_mtime_ns, evaluation.stat().st_mtime_ns) == stamps
    assert again["rows"] == rows
    # a failed gradient-masking check in one run is carried into the summary and the table
    result = json.loads(evaluation.read_text())
    result["checks"].append(
        {"check": "large-eps-reaches-zero", "status": "fail", "detail": "0.08 at eps 0.5"}
    )
    result["gradient_masking_suspected"] = True
    evaluation.write_text(json.dumps(result))
    flagged = run_experiment(path, out, log=lambda m: None)
    assert [c["run"] for c in flagged["checks"] if c["failed"]] == ["runs/digits/mlp-if-s0"]
    assert "large-eps-reaches-zero: 0.08 at eps 0.5" in (out / "table.md").read_text()


@pytest.mark.parametrize(
    "change, message",
    [
        (('neuron = "if"', 'neuron = "iff"'), "Did you mean 'if'"),
        (('models = ["mlp"]', 'models = ["mpl"]'), "Did you mean 'mlp'"),
        (("[datasets.digits]", "[datasets.digts]"), "Did you mean 'digits'"),
        (('attacks = ["fgsm", "pgd"]', 'attacks = ["pgdd"]'), "unknown attack 'pgdd'"),
        (("eps = [0.0, 0.1, 0.3]", "eps = [-0.1]"), "eps must be finite and >= 0"),
        (('attacks = ["fgsm", "pgd"]', 'attacks = ["transfer"]'), "transfer attack needs a source"),
        (("steps = 3", "stpes = 3"), "unknown key.*stpes"),
        (("epochs = 1", "epochs = 0"), "epochs must be a positive integer"),
        (("seeds = [0, 1]", "seeds = []"), "seeds must be a non-empty list"),
        (('name = "tiny"', "name = "), "not valid TOML"),
    ],
)
def test_a_bad_experiment_file_is_rejected_before_anything_runs(tmp_path, change, message):
    path = write(tmp_path, TINY.replace(*change))
    with pytest.raises(UsageError, match=message):
        load_experiment(path)
    assert not (tmp_path / "out").exists()


def test_cli_dry_run_lists_the_runs_and_missing_file_is_clear(tmp_path, capsys):
    path = write(tmp_path)
    assert main(["experiment", str(path), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 runs" in out and "linear-lif" in out
    assert main(["experiment", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["experiment", str(path), "--out", str(tmp_path / "o"), "--dataset", "mnist"]) == 2
    assert "not in" in capsys.readouterr().err


def test_the_shipped_linear_leak_experiment_is_valid():
    from pathlib import Path

    exp = load_experiment(Path(__file__).parents[2] / "experiments" / "linear_leak.toml")
    assert set(exp.neurons) == {"if", "lif", "linear-lif"}
    assert exp.models == ["mlp", "cnn", "vgg11"] and exp.seeds == [0, 1, 2]
    assert {d.name for d in exp.datasets} == {"mnist", "cifar10"}
    assert next(d for d in exp.datasets if d.name == "cifar10").reduced  # labelled as not paper scale
    assert len(exp.runs()) == 54
