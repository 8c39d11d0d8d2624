"""Issue 19 §1 for the experiment layer: a hostile or mistaken experiment file, and a damaged
file in an experiment's output folder, are one line naming the file and the field."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from spikeshield.analysis.report import read_summary
from spikeshield.analysis.robustness import read_evaluation
from spikeshield.cli import main
from spikeshield.errors import DataError, UsageError
from spikeshield.experiments.pipeline import EvalSettings, cell_evaluations, evaluate
from spikeshield.experiments.plan import MAX_FILE_BYTES, build_models, load_plan
from spikeshield.experiments.runner import check_out, collect, run_experiment
from spikeshield.sampling.experiment import load_sampling_plan
from tests.experiments.test_plan import TINY, write
from tests.limits import no_hang

HUGE_INT = "7" * 5000
DEEP = "[" * 100_000 + "]" * 100_000
SEEDS = "seeds = [0, 1]"


def rejected(tmp_path, text: str | bytes, pattern: str) -> str:
    """The one-line UsageError of loading ``text`` as an experiment file: it starts with the
    file's path and matches ``pattern``."""
    path = tmp_path / "exp.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with no_hang(20), pytest.raises(UsageError) as info:
        load_plan(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    assert re.search(pattern, message), message
    return message


ISSUE_EXAMPLES = {
    "non-UTF-8 byte": (TINY.encode().replace(b'"tiny"', b'"ti\xffny"'), r"not UTF-8 text \(byte 11"),
    "deeply nested array": (TINY.replace('"a test"', DEEP), r"not usable TOML \(nested too deeply\)"),
    "deeply nested table": (
        TINY.replace('"a test"', "{a = " * 50_000 + "1" + "}" * 50_000),
        r"not usable TOML \(nested too deeply\)",
    ),
    "a 5000-digit integer": (
        TINY.replace(SEEDS, f"seeds = [{HUGE_INT}]"),
        r"not valid TOML \(line 4: an integer of more than 4300 digits\)",
    ),
    "[train] seed = 3": (
        TINY.replace("[train]", "[train]\nseed = 3"),
        r"train: 'seed' is set per run, by 'seeds'",
    ),
    "model_options = 5": (
        TINY.replace("model_options = { mlp = { hidden = [32] } }", "model_options = 5"),
        r"model_options: expected `object`, got `int`",
    ),
    "eps = 5": (
        TINY.replace("eps = [0.0, 0.1, 0.3]", "eps = 5"),
        r"datasets\.digits\.eps: expected `array`, got `int`",
    ),
}


@pytest.mark.parametrize("name", list(ISSUE_EXAMPLES))
def test_the_issues_examples(tmp_path, name):
    text, pattern = ISSUE_EXAMPLES[name]
    rejected(tmp_path, text, pattern)


def swap(old: str, new: str, text: str = TINY) -> str:
    assert old in text, old
    return text.replace(old, new)


def top(line: str, text: str = TINY) -> str:
    """``line`` added to the top-level table."""
    return swap('models = ["mlp"]', f'models = ["mlp"]\n{line}', text)


DIGITS = '[datasets.digits]\nbudget = "1 epoch"\neps = [0.0, 0.1, 0.3]\n'


WRONG = [
    # the top level
    (swap('name = "tiny"', "name = 5"), r": name: expected `str`, got `int`"),
    (swap('claim = "a test"', "claim = []"), r": claim: expected `str`, got `array`"),
    (swap('name = "tiny"', ""), r"object missing required field `name`"),
    (swap(SEEDS, 'seeds = "0"'), r": seeds: expected `array`, got `str`"),
    (swap(SEEDS, "seeds = [1979-05-27]"), r": seeds\[0\]: expected `int`, got `date`"),
    (swap(SEEDS, "seeds = [-1]"), r": seeds\[0\]: expected `int` >= 0"),
    (swap(SEEDS, "seeds = [true]"), r": seeds\[0\]: expected `int`, got `bool`"),
    (swap(SEEDS, "seeds = [3, 3]"), r": seeds\[1\]: 3 is listed twice"),
    (swap('models = ["mlp"]', 'models = "mlp"'), r": models: expected `array`, got `str`"),
    (swap('models = ["mlp"]', "models = []"), r": models: expected `array` of length >= 1"),
    (swap('models = ["mlp"]', 'models = ["mlp", "mlp"]'), r": models\[1\]: 'mlp' is listed twice"),
    (
        swap("{ mlp = { hidden = [32] } }", "{ mlp = 5 }"),
        r": model_options\.mlp: expected `object`, got `int`",
    ),
    (
        swap("{ mlp = { hidden = [32] } }", "{ cnn = {} }"),
        r": model_options\.cnn: 'cnn' is not one of the models",
    ),
    # neurons and modes
    (
        swap('[neurons.if]\nneuron = "if"', "[neurons]\nif = 3"),
        r": neurons\.if: expected `object`, got `int`",
    ),
    (swap('neuron = "if"', "neuron = 5"), r": neurons\.if\.neuron: expected `str`, got `int`"),
    (swap("options = { leak = 0.1 }", "options = 5"), r": neurons\.linear-lif\.options: expected `object`"),
    (
        swap("options = { leak = 0.1 }", 'options = { leak = "x" }'),
        r": neurons\.linear-lif\.options: leak must",
    ),
    (swap('neuron = "if"', 'neuron = "if"\nmode = "bptt"'), r": neurons\.if: unknown key 'mode'; allowed"),
    (swap("[train]", "[modes.x]\nmode = 1\n[train]"), r": modes\.x\.mode: expected `str`, got `int`"),
    (top("modes = {}"), r": modes: expected `object` of length >= 1"),
    # the shared training settings, and one dataset's
    (swap("time_steps = 2", 'time_steps = "2"'), r": train\.time_steps: expected `int \| array`, got `str`"),
    (
        swap("time_steps = 2", "time_steps = 2.5"),
        r": train\.time_steps: expected `int \| array`, got `float`",
    ),
    (swap("epochs = 1", "epochs = 1\nlr = 'x'"), r": train\.lr: expected `float \| null`, got `str`"),
    (swap("epochs = 1", "epochs = 1\nnormalize = 1"), r": train\.normalize: expected `bool`, got `int`"),
    (swap("epochs = 1", "epochs = 1\naugment = 5"), r": train\.augment: expected `str \| array`, got `int`"),
    (swap("epochs = 1", "epochs = 1\ndevice = 'cpu'"), r": train: 'device' is set per run, by --device"),
    (
        swap("[datasets.digits]", "[datasets.digits]\ntrain = { model = 'cnn' }"),
        r"datasets\.digits\.train: 'model'",
    ),
    (
        swap("[datasets.digits]", "[datasets.digits]\ntrain = 5"),
        r": datasets\.digits\.train: expected `object`",
    ),
    (
        swap("[datasets.digits]", "[datasets.digits]\ntrain = { epochs = -1 }"),
        r"digits: epochs must be a positive",
    ),
    # datasets and the evaluation protocol
    (swap('budget = "1 epoch"', "budget = 5"), r": datasets\.digits\.budget: expected `str`, got `int`"),
    (
        swap('budget = "1 epoch"', 'reduced = "yes"'),
        r": datasets\.digits\.reduced: expected `bool`, got `str`",
    ),
    (swap("eps = [0.0, 0.1, 0.3]", "eps = [nan]"), r": datasets\.digits\.eps\[0\]: expected `float` >= 0"),
    (swap("eps = [0.0, 0.1, 0.3]", "eps = [inf]"), r": datasets\.digits\.eps\[0\]: expected `float` <="),
    (
        swap("eps = [0.0, 0.1, 0.3]", f"eps = [{'9' * 40}]"),
        r": datasets\.digits\.eps\[0\]: expected `int` <=",
    ),
    (swap("eps = [0.0, 0.1, 0.3]", "eps = [true]"), r": datasets\.digits\.eps\[0\]: expected `int \| float`"),
    (
        swap("[evaluate]", "[datasets.digits.evaluate]\nsteps = 0\n[evaluate]"),
        r"datasets\.digits\.evaluate\.steps",
    ),
    (
        swap('attacks = ["fgsm", "pgd"]', 'attacks = "fgsm"'),
        r": evaluate\.attacks: expected `array`, got `str`",
    ),
    (
        swap('attacks = ["fgsm", "pgd"]', 'attacks = ["fgsm", "fgsm"]'),
        r": evaluate\.attacks\[1\]: 'fgsm' is listed",
    ),
    (swap('["bptt", "surrogate:atan:2"]', "[1]"), r": evaluate\.gradients\[0\]: expected `str`, got `int`"),
    (swap("steps = 3", "steps = true"), r": evaluate\.steps: expected `int`, got `bool`"),
    (swap("steps = 3", "steps = 3\nnorm = 'l3'"), r": evaluate\.norm: invalid enum value 'l3'"),
    (swap("steps = 3", "steps = 3\nseed = -1"), r": evaluate\.seed: expected `int` >= 0"),
    (swap("limit = 40", "limit = 1.5"), r": evaluate\.limit: expected `int`, got `float`"),
    (swap("noises = {", "noises = 5\n# {"), r": evaluate\.noises: expected `object`, got `int`"),
    (swap("gaussian = [0.0, 0.3]", "gaussian = [true]"), r": evaluate\.noises\.gaussian\[0\]: expected"),
    (
        top("evaluate = 5", swap("[evaluate]", "[datasets.digits.evaluate]")),
        r": evaluate: expected `object`, got `int`",
    ),
    (top("datasets = []", swap(DIGITS, "")), r": datasets: expected `object`, got `array`"),
    (
        top("datasets = { digits = 5 }", swap(DIGITS, "")),
        r": datasets\.digits: expected `object`, got `int`",
    ),
]


@pytest.mark.parametrize(("text", "pattern"), WRONG, ids=[w[1] for w in WRONG])
def test_a_wrong_type_anywhere_names_the_file_and_the_key(tmp_path, text, pattern):
    rejected(tmp_path, text, pattern)


def test_every_shipped_experiment_file_still_loads():
    root = Path(__file__).parents[2]
    files = [*root.glob("experiments/*.toml"), root / "src/spikeshield/experiments/presets/quick.toml"]
    assert len(files) >= 2
    for path in files:
        if path.name.startswith("sampling"):  # read by 'spikeshield sample experiment' instead
            assert load_sampling_plan(path).datasets, path
            continue
        plan = load_plan(path)
        assert plan.cells(), path


@pytest.mark.parametrize("kind", ["fifo", "folder", "dangling link", "too large"])
def test_an_experiment_file_that_is_not_a_small_regular_file_is_refused_without_blocking(tmp_path, kind):
    path = tmp_path / "exp.toml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "dangling link":
        path.symlink_to(tmp_path / "gone.toml")
    else:
        path.write_text(TINY + "#" * MAX_FILE_BYTES)
    expected = {"fifo": "is a FIFO", "folder": "is a folder", "dangling link": "dangling symbolic link"}
    with no_hang(10), pytest.raises(UsageError, match=expected.get(kind, "more than the")) as info:
        load_plan(path)
    assert str(info.value).startswith(f"{path}: ")


# ------------------------------------------------------------------------------------ dry run


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("hidden = [32]", 'hidden = "x"'),
            r"building cell digits / mlp / (if|linear-lif): mlp hidden sizes .*got 'x'",
        ),
        (
            ("hidden = [32]", "hidden = [-3]"),
            r"building cell digits / mlp / (if|linear-lif): mlp hidden sizes",
        ),
        (("hidden = [32]", "hiden = [32]"), r"model 'mlp' does not take option\(s\) hiden"),
    ],
)
def test_dry_run_builds_every_model_so_options_that_fail_only_when_built_fail_now(
    tmp_path, capsys, change, message
):
    path = write(tmp_path, TINY.replace(*change))
    load_plan(path)  # the file itself is well-formed: only building the model shows the problem
    out = tmp_path / "o"
    assert main(["experiment", str(path), "--out", str(out), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"spikeshield: error: {path}: "), err
    assert re.search(message, err), err
    # a real run refuses the same file before it trains anything
    with pytest.raises(UsageError, match=message):
        run_experiment(path, out, log=lambda _m: None)
    assert not out.exists()


def test_dry_run_of_a_good_file_builds_each_distinct_model_once(tmp_path, capsys):
    path = write(tmp_path)
    assert main(["experiment", str(path), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 runs" in out and "each of the 2 distinct model(s) was built once" in out
    plan = load_plan(path)
    assert build_models(plan) == 2  # 1 dataset × 1 model × 2 neurons; seeds and modes share a model


def test_a_neuron_that_needs_the_time_steps_is_checked_at_its_runs_time_steps(tmp_path):
    path = write(tmp_path, swap('[neurons.if]\nneuron = "if"', '[neurons.d]\nneuron = "dlif"'))
    assert build_models(load_plan(path)) == 2


# ------------------------------------------------------------------------------------ output files

RESULT_DAMAGE = [
    ("[1]", r"is not a spikeshield robustness file"),
    ("{", r"robustness\.json: not valid JSON"),
    (DEEP, r"robustness\.json: not usable JSON \(nested too deeply\)"),
    ('{"samples": ' + HUGE_INT + "}", r"robustness\.json: not valid JSON \(line 1: an integer of more than"),
    (lambda r: {**r, "records": 5}, r"robustness\.json: records: expected `array`, got `int`"),
    (
        lambda r: {**r, "clean_accuracy": "x"},
        r"robustness\.json: clean_accuracy: expected `float`, got `str`",
    ),
    (lambda r: {**r, "samples": -1}, r"robustness\.json: samples: expected `int` >= 0"),
    (
        lambda r: {**r, "records": [{**r["records"][0], "accuracy": 2.0}]},
        r"records\[0\]\.accuracy: expected `float` <= 1",
    ),
    (lambda r: {**r, "records": [{**r["records"][0], "kind": "x"}]}, r"records\[0\]\.kind: invalid value"),
    (lambda r: {**r, "checks": [{"check": 1}]}, r"checks\[0\]\.check: expected `str`, got `int`"),
    (lambda r: {**r, "inputs": {"weights_sha256": 5}}, r"inputs\[\.\.\.\]: expected `str`, got `int`"),
]


def damage(path, how) -> None:
    if isinstance(how, str):
        path.write_text(how)
    else:
        path.write_text(json.dumps(how(json.loads(path.read_text()))))


SMALL = EvalSettings(noises={"gaussian": (0.0, 0.2)}, limit=16, checks=False)


@pytest.mark.parametrize(("how", "pattern"), RESULT_DAMAGE, ids=[d[1] for d in RESULT_DAMAGE])
def test_a_damaged_robustness_json_is_one_line_naming_it(run_dir, tmp_path, capsys, how, pattern):
    first = evaluate(run_dir, SMALL, device="cpu", log=lambda _m: None)
    path = first.folder / "robustness.json"
    assert read_evaluation(path)["records"]  # what evaluate writes reads back
    damage(path, how)
    with pytest.raises(DataError, match=pattern) as info:
        read_evaluation(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
    # the reuse of a finished evaluation: refused, naming the file, unless --overwrite
    with pytest.raises(DataError, match=r"robustness\.json.*pass --overwrite to replace this evaluation"):
        evaluate(run_dir, SMALL, device="cpu", log=lambda _m: None)
    assert path.read_text() != json.dumps(first.result)  # nothing was replaced
    # the report over the run: exit 1, one line naming the file
    assert main(["report", str(run_dir), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err, err
    again = evaluate(run_dir, SMALL, device="cpu", overwrite=True, log=lambda _m: None)
    accuracies = [[r["accuracy"] for r in e.result["records"]] for e in (first, again)]
    assert not again.reused and accuracies[0] == accuracies[1]


SUMMARY_DAMAGE = [
    ("[1]", r"summary\.json: expected `object`, got `array`"),
    (DEEP, r"summary\.json: not usable JSON \(nested too deeply\)"),
    ('{"format_version": ' + HUGE_INT + "}", r"summary\.json: not valid JSON \(line 1: an integer of more"),
    ('{"format": "spikeshield-summary"', r"summary\.json: not valid JSON"),
    ('{"format": "other", "format_version": 2}', r"summary\.json: format: invalid enum value 'other'"),
    (
        '{"format": "spikeshield-summary", "format_version": "2"}',
        r"format_version: expected `int`, got `str`",
    ),
    (
        '{"format": "spikeshield-summary", "format_version": 2, "plan_fingerprint": 5}',
        r"summary\.json: plan_fingerprint: expected `str \| null`, got `int`",
    ),
    (
        '{"format": "spikeshield-summary", "format_version": 2, "rows": [{"mean": "x"}]}',
        r"summary\.json: rows\[0\]",
    ),
]


@pytest.mark.parametrize(("text", "pattern"), SUMMARY_DAMAGE, ids=[d[1] for d in SUMMARY_DAMAGE])
def test_a_damaged_summary_json_is_one_line_naming_it(tmp_path, capsys, text, pattern):
    plan = load_plan(write(tmp_path))
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text(text)
    with pytest.raises(DataError, match=pattern):
        read_summary(out / "summary.json")
    with pytest.raises(DataError, match=pattern):
        check_out(plan, out, plan.selected(), "cpu")
    check_out(plan, out, plan.selected(), "cpu", overwrite=True)  # it is being replaced: not read
    assert main(["experiment", str(tmp_path / "exp.toml"), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "summary.json" in err, err


def test_the_committed_summary_reads_back():
    root = Path(__file__).parents[2]
    assert read_summary(root / "results/linear_leak/grid/summary.json")["format"] == "spikeshield-experiment"


@pytest.mark.parametrize(
    ("name", "text", "pattern"),
    [
        (
            "metrics.json",
            '{"complete": true, "test_accuracy": "x", "epochs": 0, "history": []}',
            "test_accuracy",
        ),
        ("metrics.json", "[1]", r"metrics\.json: expected `object`, got `array`"),
        ("config.json", "[1]", r"config\.json: expected `object`, got `array`"),
    ],
)
def test_a_damaged_run_file_in_the_grid_is_an_error_naming_it_not_a_missing_cell(
    run_dir, tmp_path, name, text, pattern
):
    plan = load_plan(write(tmp_path, TINY.replace("{ hidden = [32] }", "{ hidden = [64] }")))
    out = tmp_path / "out"
    cell = plan.cells()[0]
    shutil.copytree(run_dir, plan.run_dir(out, cell))
    assert collect(plan, out)[1]  # a healthy run trained with other settings: just missing
    (plan.run_dir(out, cell) / name).write_text(text)
    with pytest.raises(DataError, match=pattern) as info:
        collect(plan, out)
    assert str(plan.run_dir(out, cell) / name) in str(info.value)


@pytest.mark.parametrize(
    ("name", "text", "pattern"),
    [
        ("config.json", "[1]", r"config\.json: expected `object`, got `array`"),
        (
            "metrics.json",
            '{"complete": true, "test_accuracy": "x", "epochs": 0, "history": []}',
            "test_accuracy",
        ),
        ("robustness.json", "{not json", r"robustness\.json: not valid JSON"),
        ("robustness.json", None, r"robustness\.json.* is a FIFO"),
    ],
    ids=[
        "config.json a list",
        "metrics.json wrong type",
        "robustness.json not JSON",
        "robustness.json a FIFO",
    ],
)
def test_a_damaged_file_anywhere_in_the_grid_fails_before_any_work(tmp_path, capsys, name, text, pattern):
    exp = write(tmp_path)
    plan = load_plan(exp)
    out = tmp_path / "out"
    cell = next(c for c in plan.cells() if c.seed == 1)  # not selected below: read by the summary
    run_dir = plan.run_dir(out, cell)
    path = run_dir / name
    if name == "robustness.json":
        path = run_dir / "evaluations" / cell_evaluations(plan, cell)[0].folder_name() / name
    path.parent.mkdir(parents=True)
    if text is None:
        os.mkfifo(path)
    else:
        path.write_text(text)
    with no_hang(10), pytest.raises(DataError, match=pattern) as info:
        check_out(plan, out, plan.selected(), "cpu")
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
    args = ["experiment", str(exp), "--out", str(out), "--seeds", "0", "--device", "cpu"]
    with no_hang(20):
        assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err, err
    assert not [c for c in plan.cells() if plan.run_dir(out, c).exists() and c.seed == 0]  # nothing trained
