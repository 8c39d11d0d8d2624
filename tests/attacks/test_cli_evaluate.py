import csv
import json
import shutil

import pytest

from spikeshield.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def run_copy(digits_lif_run, tmp_path):
    """A private copy of the trained run, so tests can write into it."""
    return shutil.copytree(digits_lif_run, tmp_path / "run")


def only_evaluation(run):
    """The single evaluation folder of a run."""
    (folder,) = (run / "evaluations").iterdir()
    return folder


def test_evaluate_writes_json_csv_and_curves(run_copy, capsys):
    code = main(
        [
            "evaluate", "--run", str(run_copy), "--attack", "fgsm", "pgd", "--eps", "0", "0.1", "0.2",
            "--steps", "5", "--corruption", "gaussian", "salt-pepper", "--levels", "0", "0.2",
            "--limit", "100", "--check-samples", "50", "--seed", "2",
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "gradient-masking checks" in printed and "pgd-5" in printed
    folder = only_evaluation(run_copy)
    assert folder.name.startswith("bptt-")
    result = json.loads((folder / "robustness.json").read_text())
    assert result["samples"] == 100 and result["dataset"] == "digits" and result["model"]["neuron"] == "lif"
    assert result["command"].startswith("spikeshield evaluate --run")
    assert folder.name == f"bptt-{result['settings_sha256'][:12]}" and result["settings"]["limit"] == 100
    attacks = [r for r in result["records"] if r["kind"] == "attack"]
    assert {(r["attack"], r["eps"]) for r in attacks} == {
        (a, e) for a in ("fgsm", "pgd") for e in (0, 0.1, 0.2)
    }
    assert all(r["seed"] == 2 and r["norm"] == "linf" and r["gradient"] == "bptt" for r in attacks)
    assert {(r["noise"], r["level"]) for r in result["records"] if r["kind"] == "noise"} == {
        (n, lv) for n in ("gaussian", "salt-pepper") for lv in (0, 0.2)
    }
    metrics = json.loads((run_copy / "metrics.json").read_text())
    assert result["limit"] == 100 and 0.8 < result["clean_accuracy"] <= 1.0
    assert metrics["test_accuracy"] > 0.9
    rows = list(csv.DictReader((folder / "robustness.csv").open()))
    assert rows[0]["name"] == "clean" and len(rows) == 1 + len(result["records"])
    assert {"gradient", "steps", "step_size", "restarts", "eot_samples", "seed"} <= set(rows[0])
    for png in ("robustness_attacks.png", "robustness_noise.png"):
        assert (folder / png).read_bytes()[:8] == PNG
    assert not list(folder.glob(".*.tmp"))

    other = run_copy.parent / "other"
    shutil.copytree(run_copy, other)
    assert main(["evaluate", "--run", str(other), "--attack", "pgd", "--eps", "0.1", "--steps", "3",
                 "--gradient", "bptr", "--limit", "60", "--no-checks"]) == 0  # fmt: skip
    (unchecked_folder,) = (other / "evaluations").glob("bptr-*")
    unchecked = json.loads((unchecked_folder / "robustness.json").read_text())
    assert unchecked["gradient_masking_suspected"] is None and "skipped" in unchecked["warnings"][0]
    out = run_copy.parent / "report"
    capsys.readouterr()
    assert main(["report", str(run_copy), str(other), "--out", str(out)]) == 0
    report = (out / "table.md").read_text()
    # the two runs have the same settings and seed (a copy), so they get a column each, by folder name
    assert "| model | perturbation | level | run | other |" in report
    assert "| cnn | pgd-3 [bptr] | 0.1 |  | " in report  # only `other` was attacked with BPTR
    assert "`" + str(other) + "` (bptr): not checked" in report
    assert (out / "digits_cnn.png").read_bytes()[:8] == PNG
    # a second report into the same folder is refused; --overwrite replaces it
    assert main(["report", str(run_copy), "--out", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["report", str(run_copy), "--out", str(out), "--overwrite"]) == 0
    replaced = (out / "table.md").read_text()
    assert "| other |" not in replaced and str(other) not in replaced


@pytest.mark.parametrize(
    "args, message",
    [
        (["--attack", "pgdd"], "Did you mean 'pgd'"),
        (
            ["--levels", "0.1"],
            "--levels 0.1 sets the levels of the random corruptions, and none was named: "
            "add --corruption NAME (e.g. --corruption gaussian --levels 0.1); attack budgets are --eps",
        ),
        (
            ["--corruption", "0.2"],
            "--corruption takes names (event-drop, event-insert, gaussian, "
            "salt-pepper, spatial-jitter, uniform), got '0.2'; levels go to --levels, e.g. --corruption "
            "gaussian --levels 0.2",
        ),
        (["--attack", "square", "--norm", "l2"], "supports norm linf"),
        (["--attack", "pgd", "--gradient", "magic"], "unknown gradient"),
        (["--corruption", "fog"], "unknown corruption 'fog'"),
        (["--attack", "pgd", "--steps", "0"], "steps must be an integer >= 1"),
        (["--attack", "pgd", "--check-samples", "0"], "--check-samples must be a positive integer"),
        (["--attack", "pgd", "--check-samples", "-3"], "--check-samples must be a positive integer"),
    ],
)
def test_evaluate_usage_errors_are_one_line(run_copy, capsys, args, message):
    assert main(["evaluate", "--run", str(run_copy), "--limit", "20", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_evaluate_never_overwrites_a_users_file_in_its_out_folder(run_copy, capsys):
    out = run_copy.parent / "mine"
    out.mkdir()
    (out / "robustness.csv").write_text("keep")
    args = [
        "evaluate",
        "--run",
        str(run_copy),
        "--attack",
        "fgsm",
        "--eps",
        "0.1",
        "--limit",
        "10",
        "--no-checks",
    ]
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "robustness.csv" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (out / "robustness.csv").read_text() == "keep"
    assert main([*args, "--out", str(out), "--overwrite"]) == 0
    assert (out / "robustness.csv").read_text() != "keep"


def test_evaluate_and_report_missing_files_are_clear(tmp_path, capsys):
    assert main(["evaluate", "--run", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 1
    assert "no robustness.json found" in capsys.readouterr().err


def test_evaluate_suite_writes_an_evaluation_folder_of_its_own(run_copy, capsys):
    code = main(
        [
            "evaluate", "--run", str(run_copy), "--suite", "reliable", "--eps", "0.1", "--steps", "5",
            "--queries", "20", "--assg-rounds", "2", "--assg-samples", "10", "--limit", "30",
            "--check-samples", "20",
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "reliable (fooled: apgd-ce" in printed and "gradient-masking checks" in printed
    folder = only_evaluation(run_copy)
    assert folder.name.startswith("reliable-")
    result = json.loads((folder / "robustness.json").read_text())
    assert result["suite"]["name"] == "reliable" and result["suite"]["steps"] == 5
    assert result["settings"]["suite"] == "reliable" and result["settings"]["assg_rounds"] == 2
    record = next(r for r in result["records"] if r["eps"] == 0.1)
    assert len(record["broken_by"]) == 30 and record["assg_search"]["rounds_planned"] == 2
    assert (folder / "robustness_attacks.png").read_bytes()[:8] == PNG
    out = run_copy / "standard"
    assert main(["evaluate", "--run", str(run_copy), "--suite", "rssnn-standard", "--limit", "20",
                 "--no-checks", "--out", str(out)]) == 0  # fmt: skip
    standard = json.loads((out / "robustness.json").read_text())
    assert standard["suite"]["eps"] == pytest.approx(8 / 255) and len(standard["records"]) > 15


@pytest.mark.parametrize(
    "args, message",
    [
        (["--suite", "reliable", "--attack", "pgd"], "--suite reliable runs its own fixed list of attacks"),
        (["--suite", "rssnn-standard", "--levels", "0.1"], "no random corruptions; drop --levels"),
        (["--suite", "reliable", "--norm", "l2"], "under the L-inf norm only; drop --norm"),
        (["--suite", "rssnn-standard", "--eps", "0.1", "0.2"], "takes one --eps"),
        (["--suite", "rssnn-standard", "--steps", "3"], "fixes its steps"),
        (["--suite", "reliable", "--restarts", "2"], "fixes its restarts"),
        (["--suite", "reliable", "--step-size", "0.01"], "fixes its step size; drop --step-size"),
        (["--suite", "reliable", "--assg-rounds", "-1"], "rounds must be an integer >= 0"),
    ],
)
def test_suite_usage_errors_are_one_line(run_copy, capsys, args, message):
    assert main(["evaluate", "--run", str(run_copy), "--limit", "20", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_reliable_refuses_a_transfer_source_its_model_gives_no_transfer_member(run_copy, capsys):
    """--suite reliable runs its transfer member only on a model with a fake backward: on this
    LIF run a --source would have been ignored, silently."""
    args = ["evaluate", "--run", str(run_copy), "--suite", "reliable", "--limit", "4"]
    assert main([*args, "--source", str(run_copy)]) == 2
    assert capsys.readouterr().err == (
        "spikeshield: error: --source sets the source of --suite reliable's transfer member, which it "
        "runs only on a model with a fake backward (the oscillation defence), and this run's model has "
        "none; drop --source\n"
    )
    assert main([*args, "--twin-epochs", "3"]) == 2
    assert "--twin-epochs sets the source of --suite reliable's transfer member" in capsys.readouterr().err
    assert not (run_copy / "evaluations").exists()
