import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spikeshield.cli import main, parse_options
from spikeshield.errors import UsageError
from tests.data.formats import write_cifar_batches


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spikeshield.cli", *args], capture_output=True, text=True, timeout=600
    )


def test_help_for_every_command():
    for command in ("run", "train", "evaluate", "report", "neurons", "models", "datasets"):
        result = run_cli(command, "--help")
        assert result.returncode == 0 and "usage: spikeshield" in result.stdout, command
    assert "--time-steps" in run_cli("train", "--help").stdout


def test_train_writes_the_contract_files(tmp_path):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--dataset",
            "digits",
            "--model",
            "mlp",
            "--neuron",
            "linear-lif",
            "--neuron-opt",
            "leak=0.05",
            "--model-opt",
            "hidden=[64]",
            "--time-steps",
            "2",
            "--epochs",
            "2",
            "--batch-size",
            "64",
            "--lr",
            "0.003",
            "--seed",
            "1",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.5 < metrics["test_accuracy"] <= 1.0
    assert metrics["epochs"] == 2 and metrics["train_seconds"] > 0 and len(metrics["history"]) == 2
    config = json.loads((out / "config.json").read_text())
    assert (
        config["train"]["neuron_options"] == {"leak": 0.05} and config["model_spec"]["neuron"] == "linear-lif"
    )
    assert (out / "model.safetensors").stat().st_size > 0


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["train", "--neuron", "lfi", "--out", "X"], 2, "Did you mean 'lif'"),
        (["train", "--model", "resnet", "--out", "X"], 2, "Did you mean 'resnet19'"),
        (["train", "--dataset", "mnits", "--out", "X"], 2, "Did you mean 'mnist'"),
        (["train", "--time-steps", "0", "--out", "X"], 2, "--time-steps (-T) must be a positive integer"),
        (["train", "-T", "0", "--out", "X"], 2, "--time-steps (-T) must be a positive integer, got 0"),
        (["train", "--lr", "-1", "--out", "X"], 2, "--lr must be > 0, got -1.0"),
        (["train", "--limit-train", "0", "--out", "X"], 2, "--limit-train must be a positive integer, got 0"),
        (["train", "--threads", "0", "--out", "X"], 2, "--threads must be a positive integer, got 0"),
        (
            ["convert", "--run", "X", "--to", "multistep", "-T", "0", "--out", "X"],
            2,
            "--time-steps (-T) must be a positive integer, got 0",
        ),
        (
            ["convert", "--run", "X", "--to", "multistep", "-T", "4", "--sweep", "8", "0", "--out", "X"],
            2,
            "--sweep must be a positive integer, got 0",
        ),
        (
            ["convert", "--run", "X", "--to", "multistep", "-T", "4", "--v-init", "1", "--out", "X"],
            2,
            "--v-init must be in [0, 1), got 1.0",
        ),
        (["train", "--neuron-opt", "tau", "--out", "X"], 2, "KEY=VALUE"),
        (["train", "--neuron", "if", "--neuron-opt", "tau=2", "--out", "X"], 2, "does not take option"),
        (["train", "--dataset", "mnist", "--data-root", "/nonexistent", "--out", "X"], 1, "not found"),
        (["train", "--epochs", "x", "--out", "X"], 2, "invalid int value"),
        (["train"], 2, "--out"),
        (["bogus"], 2, "invalid choice"),
    ],
)
def test_errors_are_one_line_with_exit_codes(tmp_path, args, code, message):
    args = [str(tmp_path / "out") if a == "X" else a for a in args]
    result = run_cli(*args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, where",
    [
        (["train", "--out", "x", "--bogus", "3"], "spikeshield train"),
        (["sample", "experiment", "f.toml", "--out", "x", "--bogus"], "spikeshield sample experiment"),
    ],
)
def test_unrecognized_arguments_point_to_the_commands_own_help(args, where, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith("spikeshield: error: unrecognized arguments: --bogus")
    assert f"(see '{where} --help')" in err


def test_a_failed_train_leaves_no_folder_it_created_and_resume_needs_a_run(tmp_path, capsys):
    out = tmp_path / "new" / "run"
    missing = ["train", "--dataset", "mnist", "--data-root", str(tmp_path / "none"), "--device", "cpu"]
    assert main([*missing, "--out", str(out)]) == 1
    assert "not found" in capsys.readouterr().err and not out.parent.exists()  # nor the parent it made
    out.mkdir(parents=True)  # a folder the user made is theirs: kept
    assert main([*missing, "--out", str(out)]) == 1 and out.is_dir()
    capsys.readouterr()
    assert main(["train", "--dataset", "digits", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"spikeshield: error: --resume: {out} holds no run to continue (it is empty or missing); "
        "drop --resume\n"
    )
    assert not any(out.iterdir())


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--eps", "-0.1"], "--eps must be finite and >= 0, got -0.1"),
        (["--eps", "nan"], "--eps must be finite and >= 0, got nan"),
        (["--steps", "0"], "--steps must be an integer >= 1, got 0"),
        (["--eot", "0"], "--eot must be an integer >= 1, got 0"),
        (["--restarts", "-1"], "--restarts must be an integer >= 1, got -1"),
        (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
        (["--twin-epochs", "-1"], "--twin-epochs must be a non-negative integer, got -1"),
        (["--step-size", "inf"], "--step-size must be a finite number, got inf"),
        (["--step-size", "0"], "--step-size must be > 0, got 0.0"),
        (["--gradient", "surogate:atan"], "--gradient surogate:atan: unknown gradient 'surogate:atan'"),
        (["--gradient", "assg:-1"], "--gradient assg:-1: assg A (atan) must be in (0, 0.5), got -1.0"),
        (["--gradient", "assg:x"], "--gradient assg:x: A must be a number, got 'x'"),
        (["--levels", "0.1"], "--levels 0.1 sets the levels of the random corruptions"),
        (["--corruption", "gaussian", "0.1"], "--corruption takes names"),
        (["--threads", "0"], "--threads must be a positive integer, got 0"),
        (["--norm", "l2", "--attack", "square"], "supports norm linf"),
        (["--corruption", "salt-pepper", "--levels", "1.5"], "salt-pepper density must be in [0, 1]"),
        (["--corruption", "gaussian", "--levels", "-1"], "gaussian corruption level must be a number >= 0"),
    ],
)
def test_evaluate_checks_every_flag_before_any_work(flags, message, tmp_path, monkeypatch, capsys):
    """A bad --eps / --steps / --eot was found only after the transfer attack's ANN twin had been
    fitted (new-user trial): now nothing is loaded, fitted or attacked before every flag is checked."""

    def no_work(*args, **kwargs):
        raise AssertionError("evaluate ran before the flags were checked")

    monkeypatch.setattr("spikeshield.experiments.pipeline.evaluate", no_work)
    assert main(["evaluate", "--run", str(tmp_path / "run"), "--attack", "transfer", "pgd", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1


def test_parse_options_types():
    assert parse_options(["a=1", "b=0.5", "c=true", "d=none", "e=atan:2", "f=[1, 2]", "g-h=x"], "--x") == {
        "a": 1,
        "b": 0.5,
        "c": True,
        "d": None,
        "e": "atan:2",
        "f": [1, 2],
        "g_h": "x",
    }


def test_listings_run(capsys, shared_data):
    assert main(["neurons"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in ("linear-lif", "klif", "dlif", "oscillating-lif", "noisy-if", "triangle"))
    assert main(["models"]) == 0
    assert "resnet19" in capsys.readouterr().out
    assert main(["datasets", "--data-root", str(shared_data)]) == 0
    out = capsys.readouterr().out
    assert "mnist" in out and "ready" in out


def test_datasets_lists_every_dataset_where_it_looked_and_readiness(capsys, shared_data):
    assert main(["datasets", "--data-root", str(shared_data)]) == 0
    lines = capsys.readouterr().out.splitlines()
    status = {line.split()[0]: line.split()[1] for line in lines[1:] if not line.startswith(" ")}
    assert set(status) == {
        "cifar10",
        "cifar10-dvs",
        "digits",
        "dvs-gesture",
        "fashion-mnist",
        "mnist",
        "nmnist",
    }
    assert status["nmnist"] == status["cifar10"] == status["mnist"] == "ready"
    assert status["dvs-gesture"] == status["cifar10-dvs"] == "missing"  # no real files on these machines
    looked = [line for line in lines if line.strip().startswith("looked in:")]
    assert any(str(shared_data / "DvsGesture") in line for line in looked)


def test_train_preset_gives_defaults_that_flags_override(tmp_path):
    out = tmp_path / "run"
    args = [
        "train",
        "--dataset",
        "digits",
        "--preset",
        "plif:2",
        "--neuron",
        "klif",
        "--model-opt",
        "channels=4",
    ]
    assert (
        main([*args, "--batch-size", "64", "--limit-train", "64", "--limit-test", "32", "--out", str(out)])
        == 0
    )
    saved = json.loads((out / "config.json").read_text())["train"]
    assert (saved["model"], saved["readout"], saved["loss"], saved["voters"]) == (
        "plifnet",
        "voting",
        "mse",
        10,
    )
    assert (saved["lr"], saved["time_steps"], saved["batch_size"]) == (1e-3, 2, 64)  # --batch-size wins
    assert saved["model_options"] == {"channels": 4}
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert set(history[0]["neuron_parameters"]) == {"body.0", "body.3", "body.8", "head_neuron"}
    assert main(["train", "--preset", "nope", "--out", str(tmp_path / "x")]) == 2


def test_augment_none_turns_a_presets_augmentation_off(tmp_path):
    write_cifar_batches(tmp_path / "data" / "cifar-10-batches-py", per_batch=4)  # CIFAR-10 format, tiny
    base = ["train", "--dataset", "cifar10", "--data-root", str(tmp_path / "data"), "--preset", "plif:1",
            "--model-opt", "channels=2"]  # fmt: skip
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["train"]["augment"] == ["crop:4", "flip"]
    assert main([*base, "--augment", "none", "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "config.json").read_text())["train"]["augment"] == []


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--suite", "rssnn-standard", "--source", "SRC"],
            "--source sets the transfer attack's source model and --suite rssnn-standard runs no transfer "
            "attack; drop --source (the transfer attack: --attack transfer, or a member of --suite reliable)",
        ),
        (
            ["--suite", "rssnn-standard", "--twin-epochs", "2"],
            "--twin-epochs fine-tunes the transfer attack's ANN twin and --suite rssnn-standard runs no "
            "transfer attack; drop --twin-epochs (the transfer attack: --attack transfer, or a member of "
            "--suite reliable)",
        ),
        (
            ["--suite", "rssnn-standard", "--assg-rounds", "3"],
            "--assg-rounds sets the search over ASSG's A, which runs only with --gradient assg (no A given) "
            "or --suite reliable; drop --assg-rounds",
        ),
        (
            ["--attack", "fgsm", "--restarts", "3"],
            "--restarts does not apply to --attack fgsm (its options: loss, init_noise); --restarts is an "
            "option of apgd, apgd-ce, apgd-dlr, ensemble, pgd, sa-pgd, square; drop --restarts",
        ),
        (
            ["--attack", "fgsm", "--queries", "50"],
            "--queries does not apply to --attack fgsm (its options: loss, init_noise); --queries is an "
            "option of ensemble, square; drop --queries",
        ),
        (
            ["--corruption", "gaussian", "--eps", "0.1"],
            "--eps is an attack setting and no attack runs (only --corruption gaussian); drop --eps or add "
            "--attack NAME",
        ),
        (
            ["--attack", "transfer", "--source", "SRC", "--twin-epochs", "2"],
            "--twin-epochs fine-tunes the ANN twin, which --source replaces; drop one of them",
        ),
    ],
)
def test_evaluate_options_that_nothing_asked_for_would_use_are_errors(
    flags, message, tmp_path, monkeypatch, capsys
):
    """New-user trial: --suite rssnn-standard ignored --source/--twin-epochs/--assg-rounds and FGSM
    ignored --restarts/--queries, silently."""

    def no_work(*args, **kwargs):
        raise AssertionError("evaluate ran before the flags were checked")

    monkeypatch.setattr("spikeshield.experiments.pipeline.evaluate", no_work)
    flags = [str(tmp_path / "src") if f == "SRC" else f for f in flags]
    assert main(["evaluate", "--run", str(tmp_path / "run"), *flags]) == 2
    assert capsys.readouterr().err == f"spikeshield: error: {message}\n"


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--attack", "fgsm", "pgd", "--restarts", "2", "--steps", "20"], {"restarts": 2, "steps": 20}),
        (["--suite", "rssnn-standard", "--gradient", "assg", "--assg-rounds", "3"], {"assg_rounds": 3}),
        (["--attack", "transfer", "--twin-epochs", "0"], {"twin_epochs": 0}),
        (["--attack", "pgd"], {"twin_epochs": 1, "assg_rounds": 8, "assg_samples": 100}),
    ],
)
def test_evaluate_options_that_apply_reach_the_evaluation(flags, expected, tmp_path, monkeypatch):
    """An option taken by one of the attacks (README: --attack fgsm pgd --steps 20) is passed on;
    the flags left out get their documented defaults."""
    seen = []

    def recorded(run, settings, **kwargs):
        seen.append(settings)
        raise UsageError("recorded")

    monkeypatch.setattr("spikeshield.experiments.pipeline.evaluate", recorded)
    assert main(["evaluate", "--run", str(tmp_path / "run"), *flags]) == 2
    (settings,) = seen
    values = {**settings.attack_options, **{k: getattr(settings, k) for k in vars(settings)}}
    assert {k: values[k] for k in expected} == expected


def test_train_notes_unsettled_batch_norm_and_not_when_settled(tmp_path, capsys):
    """The first command a new user types (digits, one epoch: 12 batches) tests near chance
    because batch norm's running statistics still weigh their start values by 0.9^12 = 0.28;
    train says so (and is silent once they have settled)."""
    from spikeshield.training.run_files import batch_norm_start_weight

    common = ["train", "--dataset", "digits", "--model", "cnn", "--device", "cpu", "--batch-size", "128"]
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    batches, weight = batch_norm_start_weight(tmp_path / "one" / "model.safetensors")
    assert batches == 12 and abs(weight - 0.9**12) < 1e-12  # 1437 images / 128 = 12 batches
    err = capsys.readouterr().err
    assert "running statistics were updated only 12 times" in err and "by 0.28" in err and "--epochs" in err
    assert main([*common, "--epochs", "4", "--time-steps", "1", "--out", str(tmp_path / "four")]) == 0
    assert batch_norm_start_weight(tmp_path / "four" / "model.safetensors")[0] == 48  # 0.9^48 < 0.01
    assert "batch norm" not in capsys.readouterr().err
    from safetensors.torch import save_file

    save_file({"body.0.weight": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    assert batch_norm_start_weight(tmp_path / "plain.safetensors") is None  # no batch norm: no note
    # an odd weights file (damaged, a folder) on --resume of a finished run: no crash, no note
    one = tmp_path / "one" / "model.safetensors"
    one.write_bytes(b"junk")
    assert main([*common, "--out", str(tmp_path / "one"), "--resume"]) == 0
    one.unlink()
    one.mkdir()
    assert main([*common, "--out", str(tmp_path / "one"), "--resume"]) == 0
    assert "batch norm" not in capsys.readouterr().err


def test_experiment_dry_run_refuses_what_the_run_would(tmp_path, capsys):
    toml = str(Path(__file__).parents[1] / "experiments" / "oscillation.toml")
    with pytest.raises(SystemExit) as exit_:
        main(["experiment", toml, "--out", str(tmp_path / "x"), "--dry-run", "--jobs", "0"])
    assert exit_.value.code == 2
    assert "argument --jobs: must be a positive integer, got '0'" in capsys.readouterr().err
